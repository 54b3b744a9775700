//! Every SQL statement of the control plane, with bound parameters only. Timestamps leave PostgreSQL as
//! RFC 3339 text in UTC (`ts()`), so no date library is needed.

use deadpool_postgres::Pool;
use ringside_lua::quiz::Quiz;
use serde::Serialize;
use serde_json::Value;

use crate::auth;
use crate::error::ApiError;

/// `to_char` of a timestamptz column as `2026-12-06T01:00:00.000Z`.
macro_rules! ts {
    ($col:literal) => {
        concat!(
            "to_char(",
            $col,
            " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
        )
    };
}

/// A host: who owns quizzes and games.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Host {
    pub host_id: i64,
    pub name: String,
}

/// Creates a host and its first API key; returns the key (shown once, never stored).
pub async fn create_host(pool: &Pool, name: &str) -> Result<(Host, String), ApiError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ApiError::BadRequest(
            "a host name is 1..100 characters".into(),
        ));
    }
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let id: i64 = tx
        .query_one(
            "INSERT INTO hosts (name) VALUES ($1) RETURNING id",
            &[&name],
        )
        .await?
        .get(0);
    let (key_id, key, hash) = auth::new_key();
    tx.execute(
        "INSERT INTO api_keys (key_id, host_id, secret_hash) VALUES ($1, $2, $3)",
        &[&key_id, &id, &hash],
    )
    .await?;
    tx.commit().await?;
    Ok((
        Host {
            host_id: id,
            name: name.to_string(),
        },
        key,
    ))
}

/// Every host, oldest first.
pub async fn list_hosts(pool: &Pool) -> Result<Vec<Host>, ApiError> {
    let client = pool.get().await?;
    Ok(client
        .query("SELECT id, name FROM hosts ORDER BY id", &[])
        .await?
        .iter()
        .map(|r| Host {
            host_id: r.get(0),
            name: r.get(1),
        })
        .collect())
}

/// The host holding `key`, or `None` for a malformed, unknown or revoked key.
pub async fn authenticate(pool: &Pool, key: &str) -> Result<Option<Host>, ApiError> {
    let Some((key_id, secret)) = auth::parse_key(key) else {
        return Ok(None);
    };
    let client = pool.get().await?;
    let row = client
        .query_opt(
            "SELECT k.secret_hash, h.id, h.name FROM api_keys k JOIN hosts h ON h.id = k.host_id
             WHERE k.key_id = $1 AND k.revoked_at IS NULL",
            &[&key_id],
        )
        .await?;
    // Hash even when the id is unknown, so both paths cost the same.
    let given = auth::secret_hash(secret);
    Ok(row.and_then(|r| {
        let stored: Vec<u8> = r.get(0);
        auth::constant_time_eq(&stored, &given).then(|| Host {
            host_id: r.get(1),
            name: r.get(2),
        })
    }))
}

/// `private` or `public`.
pub fn check_visibility(v: &str) -> Result<&str, ApiError> {
    match v {
        "private" | "public" => Ok(v),
        other => Err(ApiError::BadRequest(format!(
            "visibility must be \"private\" or \"public\", not {other:?}"
        ))),
    }
}

/// A quiz as the library lists it (no questions).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QuizSummary {
    pub id: String,
    pub title: String,
    pub question_count: i32,
    pub visibility: String,
    pub owner: String,
    pub mine: bool,
    pub version: i32,
    pub created_at: String,
    pub updated_at: String,
}

const SUMMARY_COLS: &str = concat!(
    "q.id, q.title, q.question_count, q.visibility, h.name, q.owner_id, q.version, ",
    ts!("q.created_at"),
    ", ",
    ts!("q.updated_at")
);

fn summary(r: &tokio_postgres::Row, me: i64) -> QuizSummary {
    QuizSummary {
        id: r.get(0),
        title: r.get(1),
        question_count: r.get(2),
        visibility: r.get(3),
        owner: r.get(4),
        mine: r.get::<_, i64>(5) == me,
        version: r.get(6),
        created_at: r.get(7),
        updated_at: r.get(8),
    }
}

/// The host's own quizzes and every public quiz, newest first; `scope` narrows to `mine` or `public`.
pub async fn list_quizzes(pool: &Pool, me: i64, scope: &str) -> Result<Vec<QuizSummary>, ApiError> {
    let filter = match scope {
        "all" => "q.owner_id = $1 OR q.visibility = 'public'",
        "mine" => "q.owner_id = $1",
        "public" => "q.visibility = 'public' AND $1::bigint IS NOT NULL",
        other => {
            return Err(ApiError::BadRequest(format!(
                "scope must be all, mine or public, not {other:?}"
            )))
        }
    };
    let client = pool.get().await?;
    let sql = format!(
        "SELECT {SUMMARY_COLS} FROM quizzes q JOIN hosts h ON h.id = q.owner_id WHERE {filter}
         ORDER BY q.updated_at DESC, q.id LIMIT 1000"
    );
    Ok(client
        .query(&sql, &[&me])
        .await?
        .iter()
        .map(|r| summary(r, me))
        .collect())
}

/// A stored quiz with its body.
#[derive(Debug, Clone)]
pub struct QuizRow {
    pub summary: QuizSummary,
    pub owner_id: i64,
    pub body: Value,
}

/// The quiz `id` as `me` may see it: their own, or a public one. A private quiz of another host is
/// `None`, as if it did not exist.
pub async fn get_quiz(pool: &Pool, me: i64, id: &str) -> Result<Option<QuizRow>, ApiError> {
    let client = pool.get().await?;
    let sql = format!(
        "SELECT {SUMMARY_COLS}, q.body FROM quizzes q JOIN hosts h ON h.id = q.owner_id WHERE q.id = $1"
    );
    let Some(r) = client.query_opt(&sql, &[&id]).await? else {
        return Ok(None);
    };
    let row = QuizRow {
        summary: summary(&r, me),
        owner_id: r.get(5),
        body: r.get(9),
    };
    if row.owner_id != me && row.summary.visibility != "public" {
        return Ok(None);
    }
    Ok(Some(row))
}

/// Stores a new quiz owned by `owner`. `quiz_id_taken` when the id is used.
pub async fn insert_quiz(
    pool: &Pool,
    owner: i64,
    visibility: &str,
    quiz: &Quiz,
) -> Result<QuizSummary, ApiError> {
    let client = pool.get().await?;
    let body = serde_json::to_value(quiz).map_err(|e| ApiError::Internal(e.to_string()))?;
    let n = quiz.questions.len() as i32;
    let sql = format!(
        "WITH q AS (INSERT INTO quizzes (id, owner_id, visibility, title, question_count, body)
           VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING RETURNING *)
         SELECT {SUMMARY_COLS} FROM q JOIN hosts h ON h.id = q.owner_id"
    );
    let row = client
        .query_opt(
            &sql,
            &[&quiz.id, &owner, &visibility, &quiz.title, &n, &body],
        )
        .await?;
    row.map(|r| summary(&r, owner))
        .ok_or_else(|| ApiError::QuizIdTaken(quiz.id.clone()))
}

/// Replaces the owner's quiz `id` (body and/or visibility), bumping its version.
pub async fn update_quiz(
    pool: &Pool,
    owner: i64,
    id: &str,
    visibility: Option<&str>,
    quiz: Option<&Quiz>,
) -> Result<QuizRow, ApiError> {
    let client = pool.get().await?;
    let body = quiz
        .map(serde_json::to_value)
        .transpose()
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let title = quiz.map(|q| q.title.clone());
    let n = quiz.map(|q| q.questions.len() as i32);
    let sql = format!(
        "WITH q AS (UPDATE quizzes SET visibility = coalesce($3, visibility), body = coalesce($4, body),
            title = coalesce($5, title), question_count = coalesce($6, question_count),
            version = version + 1, updated_at = now()
          WHERE id = $1 AND owner_id = $2 RETURNING *)
         SELECT {SUMMARY_COLS}, q.body FROM q JOIN hosts h ON h.id = q.owner_id"
    );
    match client
        .query_opt(&sql, &[&id, &owner, &visibility, &body, &title, &n])
        .await?
    {
        Some(r) => Ok(QuizRow {
            summary: summary(&r, owner),
            owner_id: owner,
            body: r.get(9),
        }),
        None => Err(not_yours(pool, owner, id).await),
    }
}

/// Deletes the owner's quiz `id` (games played with it keep their copy of its id, version and title).
pub async fn delete_quiz(pool: &Pool, owner: i64, id: &str) -> Result<(), ApiError> {
    let client = pool.get().await?;
    let n = client
        .execute(
            "DELETE FROM quizzes WHERE id = $1 AND owner_id = $2",
            &[&id, &owner],
        )
        .await?;
    if n == 1 {
        Ok(())
    } else {
        Err(not_yours(pool, owner, id).await)
    }
}

/// Why `owner` could not change quiz `id`: it is someone else's public quiz (403), or nothing they
/// may see (404).
async fn not_yours(pool: &Pool, owner: i64, id: &str) -> ApiError {
    match get_quiz(pool, owner, id).await {
        Ok(Some(_)) => ApiError::Forbidden(format!("quiz {id} belongs to another host")),
        Ok(None) => ApiError::QuizNotFound(id.to_string()),
        Err(e) => e,
    }
}

/// Every public quiz id and body, and every private id (for the catalog sync).
pub async fn catalog(pool: &Pool) -> Result<(Vec<(String, Value)>, Vec<String>), ApiError> {
    let client = pool.get().await?;
    let mut public = Vec::new();
    let mut private = Vec::new();
    for r in client
        .query("SELECT id, visibility, body FROM quizzes", &[])
        .await?
    {
        let id: String = r.get(0);
        if r.get::<_, String>(1) == "public" {
            public.push((id, r.get(2)));
        } else {
            private.push(id);
        }
    }
    Ok((public, private))
}

/// Whether PostgreSQL has a quiz with this id (anyone's).
pub async fn quiz_exists(pool: &Pool, id: &str) -> Result<bool, ApiError> {
    let client = pool.get().await?;
    Ok(client
        .query_opt("SELECT 1 FROM quizzes WHERE id = $1", &[&id])
        .await?
        .is_some())
}

/// A game as the history lists it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GameSummary {
    pub room_id: String,
    pub game_code: String,
    pub quiz_id: String,
    pub quiz_version: Option<i32>,
    pub title: String,
    pub question_count: i32,
    pub created_at: String,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    /// `finished` or `abandoned`; absent while the game runs.
    pub end_reason: Option<String>,
    pub questions_played: Option<i32>,
    pub player_count: Option<i32>,
    /// Whether the results are stored (the game has ended and the writer has kept it).
    pub results_stored: bool,
    #[serde(skip)]
    pub id: i64,
}

const GAME_COLS: &str = concat!(
    "g.room_id, g.game_code, g.quiz_id, g.quiz_version, g.quiz_title, g.question_count, ",
    ts!("g.created_at"),
    ", ",
    ts!("g.started_at"),
    ", ",
    ts!("g.ended_at"),
    ", g.end_reason, g.questions_played, g.player_count, g.results_stored_at IS NOT NULL, g.id"
);

fn game_summary(r: &tokio_postgres::Row) -> GameSummary {
    GameSummary {
        room_id: r.get(0),
        game_code: r.get(1),
        quiz_id: r.get(2),
        quiz_version: r.get(3),
        title: r.get(4),
        question_count: r.get(5),
        created_at: r.get(6),
        started_at: r.get(7),
        ended_at: r.get(8),
        end_reason: r.get(9),
        questions_played: r.get(10),
        player_count: r.get(11),
        results_stored: r.get(12),
        id: r.get(13),
    }
}

/// Records a game created through the API.
#[allow(clippy::too_many_arguments)]
pub async fn insert_game(
    pool: &Pool,
    host: i64,
    room_id: &str,
    code: &str,
    quiz_id: &str,
    quiz_version: i32,
    title: &str,
    question_count: i32,
    settings: &Value,
) -> Result<(), ApiError> {
    let client = pool.get().await?;
    client
        .execute(
            "INSERT INTO games (room_id, game_code, quiz_id, quiz_version, quiz_title, host_id, settings,
               question_count) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &[&room_id, &code, &quiz_id, &quiz_version, &title, &host, settings, &question_count],
        )
        .await?;
    Ok(())
}

/// The host's games, newest first: up to `limit` with an id below `before` (the previous page's `next`).
pub async fn list_games(
    pool: &Pool,
    host: i64,
    limit: i64,
    before: Option<i64>,
) -> Result<(Vec<GameSummary>, Option<i64>), ApiError> {
    let client = pool.get().await?;
    let sql = format!(
        "SELECT {GAME_COLS} FROM games g WHERE g.host_id = $1 AND ($2::bigint IS NULL OR g.id < $2)
         ORDER BY g.id DESC LIMIT $3"
    );
    let rows = client.query(&sql, &[&host, &before, &(limit + 1)]).await?;
    let mut games: Vec<GameSummary> = rows.iter().map(game_summary).collect();
    let next = if games.len() as i64 > limit {
        games.truncate(limit as usize);
        games.last().map(|g| g.id)
    } else {
        None
    };
    Ok((games, next))
}

/// The host's game `room_id`.
pub async fn get_game(pool: &Pool, host: i64, room_id: &str) -> Result<GameSummary, ApiError> {
    let client = pool.get().await?;
    let sql = format!("SELECT {GAME_COLS} FROM games g WHERE g.room_id = $1 AND g.host_id = $2");
    client
        .query_opt(&sql, &[&room_id, &host])
        .await?
        .map(|r| game_summary(&r))
        .ok_or_else(|| ApiError::GameNotFound(room_id.to_string()))
}

/// One player's stored result.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResultRow {
    pub rank: i32,
    pub player_id: String,
    pub name: String,
    pub avatar: i32,
    pub score: i64,
    pub correct: i32,
    pub answers: Value,
}

/// A page of a game's results by rank.
pub async fn results(
    pool: &Pool,
    game_id: i64,
    offset: i64,
    limit: i64,
) -> Result<Vec<ResultRow>, ApiError> {
    let client = pool.get().await?;
    Ok(client
        .query(
            "SELECT rank, player_id, name, avatar, score, correct_count, answers FROM results
             WHERE game_id = $1 ORDER BY rank, player_id OFFSET $2 LIMIT $3",
            &[&game_id, &offset, &limit],
        )
        .await?
        .iter()
        .map(|r| ResultRow {
            rank: r.get(0),
            player_id: r.get(1),
            name: r.get(2),
            avatar: r.get(3),
            score: r.get(4),
            correct: r.get(5),
            answers: r.get(6),
        })
        .collect())
}
