//! The HTTP API (axum). Every endpoint, body and error is in `docs/api.md`; every error is JSON
//! ([`ApiError`]). Hosts authenticate with `Authorization: Bearer <api key>`.
//!
//! | endpoint | what |
//! |---|---|
//! | `GET /api/me` | the key's host |
//! | `GET /api/quizzes?scope=all\|mine\|public` | the library: own quizzes and public ones |
//! | `POST /api/quizzes` | import a quiz `{visibility, quiz}` |
//! | `GET/PUT/DELETE /api/quizzes/{id}` | one quiz (the body only for its owner) |
//! | `POST /api/rooms` | create a room `{quizId, hostName?, settings?}` → the `room:created` data |
//! | `GET /api/games?limit&before` | the host's games, newest first, paged |
//! | `GET /api/games/{roomId}?offset&limit` | one game with its results by rank |
//! | `GET /api/games/{roomId}/results.csv` | the results as CSV |
//! | `GET /healthz`, `/readyz`, `/metrics` | probes and Prometheus text |

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use deadpool_postgres::Pool;
use ringside_lua::quiz::{Quiz, QuizError};
use ringside_lua::{Game, GameError};
use ringside_protocol::events::RoomSettings;
use ringside_protocol::ErrorCode;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::FailureLimiter;
use crate::error::ApiError;
use crate::metrics::METRICS;
use crate::store::{self, Host};
use crate::{catalog, csv};

/// What every handler shares.
pub struct AppState {
    pub pool: Pool,
    pub game: Game,
    /// Failed authentications per source address: shared with the ops endpoint (`ops.rs`), so a wrong
    /// API key and a wrong ops token draw on the same budget.
    pub limiter: Arc<FailureLimiter>,
    /// Base URL of the pages for join links; `None`: from the request.
    pub public_url: Option<String>,
    pub max_body: usize,
}

pub type Shared = Arc<AppState>;

/// The API's routes.
pub fn router(state: Shared) -> Router {
    let limit = state.max_body;
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/me", get(me))
        .route("/api/quizzes", get(list_quizzes).post(create_quiz))
        .route(
            "/api/quizzes/{id}",
            get(get_quiz).put(update_quiz).delete(delete_quiz),
        )
        .route("/api/rooms", post(create_room))
        .route("/api/games", get(list_games))
        .route("/api/games/{room_id}", get(get_game))
        .route("/api/games/{room_id}/results.csv", get(results_csv))
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

// ───────────────────────────── helpers ─────────────────────────────

/// The client's address: the peer, or — behind a proxy on this machine (the edge) — the last
/// `X-Forwarded-For` entry, which that proxy wrote.
pub fn client_ip(headers: &HeaderMap, peer: SocketAddr) -> IpAddr {
    if peer.ip().is_loopback() {
        if let Some(ip) = headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(|v| v.trim().parse().ok())
        {
            return ip;
        }
    }
    peer.ip()
}

/// The host of the request's API key: handlers that need one take `Authed(host): Authed`.
pub struct Authed(pub Host);

impl FromRequestParts<Shared> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &Shared) -> Result<Self, ApiError> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0)
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
        authenticate(st, &parts.headers, peer).await.map(Authed)
    }
}

async fn authenticate(
    st: &AppState,
    headers: &HeaderMap,
    peer: SocketAddr,
) -> Result<Host, ApiError> {
    let ip = client_ip(headers, peer);
    if let Err(wait) = st.limiter.check(ip) {
        return Err(ApiError::RateLimited {
            retry_after_ms: wait.as_millis() as u64 + 1,
        });
    }
    let key = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|k| !k.is_empty());
    let Some(key) = key else {
        METRICS
            .auth_failures
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return Err(ApiError::Unauthorized);
    };
    match store::authenticate(&st.pool, key).await? {
        Some(host) => Ok(host),
        None => {
            st.limiter.failed(ip);
            METRICS
                .auth_failures
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Err(ApiError::Unauthorized)
        }
    }
}

fn json_body<T: DeserializeOwned>(
    st: &AppState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let body = body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge(st.max_body)
        } else {
            ApiError::BadRequest(r.body_text())
        }
    })?;
    let json_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/json")
        });
    if !json_type {
        return Err(ApiError::UnsupportedMediaType);
    }
    serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(format!("body: {e}")))
}

/// A quiz from JSON, validated like `ringside-quiz import`; errors name the field.
fn parse_quiz(v: Value) -> Result<Quiz, ApiError> {
    let quiz: Quiz = serde_json::from_value(v).map_err(|e| ApiError::InvalidQuiz {
        field: None,
        message: format!("not a quiz: {e}"),
    })?;
    quiz.validate().map_err(|e| {
        let field = match &e {
            QuizError::Quiz { field, .. } => Some((*field).to_string()),
            QuizError::Question { index, field, .. } => Some(format!("questions[{index}].{field}")),
            QuizError::Json(_) => None,
        };
        ApiError::InvalidQuiz {
            field,
            message: e.to_string(),
        }
    })?;
    Ok(quiz)
}

fn game_err(e: GameError) -> ApiError {
    match e {
        GameError::Refused {
            code: ErrorCode::BadPayload,
            detail,
        } => ApiError::InvalidSettings(detail),
        e if e.code() == ErrorCode::Unavailable => {
            ApiError::Unavailable(format!("redis unavailable: {e}"))
        }
        e => ApiError::Internal(e.to_string()),
    }
}

fn share_base(st: &AppState, headers: &HeaderMap) -> String {
    if let Some(base) = &st.public_url {
        return base.trim_end_matches('/').to_string();
    }
    let h = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let proto = h("x-forwarded-proto").unwrap_or("http");
    let proto = if proto == "https" { "https" } else { "http" };
    match h("x-forwarded-host").or_else(|| h("host")) {
        Some(host) if host.bytes().all(|b| b.is_ascii_graphic()) => format!("{proto}://{host}"),
        _ => String::new(),
    }
}

// ───────────────────────────── probes ─────────────────────────────

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(st): State<Shared>) -> Response {
    let pg = match st.pool.get().await {
        Ok(c) => c.query_one("SELECT 1", &[]).await.is_ok(),
        Err(_) => false,
    };
    let mut conn = st.game.conn();
    let redis = redis::cmd("PING")
        .query_async::<String>(&mut conn)
        .await
        .is_ok();
    let status = if pg && redis {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        format!("postgres {}\nredis {}\n", ok(pg), ok(redis)),
    )
        .into_response()
}

fn ok(b: bool) -> &'static str {
    if b {
        "ok"
    } else {
        "down"
    }
}

async fn metrics() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        METRICS.render(),
    )
        .into_response()
}

// ───────────────────────────── hosts and quizzes ─────────────────────────────

async fn me(Authed(host): Authed) -> Json<Host> {
    Json(host)
}

#[derive(Deserialize)]
struct ScopeQuery {
    scope: Option<String>,
}

async fn list_quizzes(
    State(st): State<Shared>,
    Authed(host): Authed,
    Query(q): Query<ScopeQuery>,
) -> Result<Json<Value>, ApiError> {
    let list =
        store::list_quizzes(&st.pool, host.host_id, q.scope.as_deref().unwrap_or("all")).await?;
    Ok(Json(json!({ "quizzes": list })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewQuiz {
    #[serde(default = "private")]
    visibility: String,
    quiz: Value,
}

fn private() -> String {
    "private".into()
}

async fn create_quiz(
    State(st): State<Shared>,
    Authed(host): Authed,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: NewQuiz = json_body(&st, &headers, body)?;
    let visibility = store::check_visibility(&req.visibility)?.to_string();
    let quiz = parse_quiz(req.quiz)?;
    // An id in the Redis catalog without a row here was imported straight into Redis: taken.
    if catalog::has(&st.game, &quiz.id).await? && !store::quiz_exists(&st.pool, &quiz.id).await? {
        return Err(ApiError::QuizIdTaken(quiz.id));
    }
    let summary = store::insert_quiz(&st.pool, host.host_id, &visibility, &quiz).await?;
    catalog::apply(&st.game, &quiz, &visibility).await?;
    METRICS
        .quizzes_written
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Ok((StatusCode::CREATED, Json(summary)).into_response())
}

async fn get_quiz(
    State(st): State<Shared>,
    Authed(host): Authed,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let row = store::get_quiz(&st.pool, host.host_id, &id)
        .await?
        .ok_or(ApiError::QuizNotFound(id))?;
    let mut v =
        serde_json::to_value(&row.summary).map_err(|e| ApiError::Internal(e.to_string()))?;
    if row.owner_id == host.host_id {
        v["quiz"] = row.body;
    }
    Ok(Json(v))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QuizUpdate {
    visibility: Option<String>,
    quiz: Option<Value>,
}

async fn update_quiz(
    State(st): State<Shared>,
    Authed(host): Authed,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let req: QuizUpdate = json_body(&st, &headers, body)?;
    let visibility = req
        .visibility
        .as_deref()
        .map(store::check_visibility)
        .transpose()?;
    let quiz = req.quiz.map(parse_quiz).transpose()?;
    if let Some(q) = &quiz {
        if q.id != id {
            return Err(ApiError::InvalidQuiz {
                field: Some("id".into()),
                message: format!("the quiz id {} does not match the URL's {id}", q.id),
            });
        }
    }
    let row = store::update_quiz(&st.pool, host.host_id, &id, visibility, quiz.as_ref()).await?;
    let stored: Quiz =
        serde_json::from_value(row.body.clone()).map_err(|e| ApiError::Internal(e.to_string()))?;
    catalog::apply(&st.game, &stored, &row.summary.visibility).await?;
    METRICS
        .quizzes_written
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut v =
        serde_json::to_value(&row.summary).map_err(|e| ApiError::Internal(e.to_string()))?;
    v["quiz"] = row.body;
    Ok(Json(v))
}

async fn delete_quiz(
    State(st): State<Shared>,
    Authed(host): Authed,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    store::delete_quiz(&st.pool, host.host_id, &id).await?;
    catalog::remove(&st.game, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ───────────────────────────── rooms ─────────────────────────────

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NewRoom {
    quiz_id: String,
    #[serde(default)]
    host_name: Option<String>,
    #[serde(default)]
    settings: Option<Value>,
}

async fn create_room(
    State(st): State<Shared>,
    Authed(host): Authed,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: NewRoom = json_body(&st, &headers, body)?;
    let settings_json = req.settings.unwrap_or_else(|| json!({}));
    let settings: RoomSettings = serde_json::from_value(settings_json.clone())
        .map_err(|e| ApiError::InvalidSettings(format!("settings: {e}")))?;
    // Only the owner's quizzes and public ones; another host's private quiz does not exist here.
    let row = store::get_quiz(&st.pool, host.host_id, &req.quiz_id)
        .await?
        .ok_or_else(|| ApiError::QuizNotFound(req.quiz_id.clone()))?;
    let created = st
        .game
        .create_room_with_quiz(
            &row.body.to_string(),
            req.host_name.as_deref(),
            &settings,
            &share_base(&st, &headers),
        )
        .await
        .map_err(game_err)?;
    store::insert_game(
        &st.pool,
        host.host_id,
        &created.room_id,
        &created.game_code,
        &row.summary.id,
        row.summary.version,
        &row.summary.title,
        row.summary.question_count,
        &settings_json,
    )
    .await?;
    METRICS
        .rooms_created
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

// ───────────────────────────── history ─────────────────────────────

#[derive(Deserialize)]
struct Page {
    limit: Option<i64>,
    before: Option<i64>,
    offset: Option<i64>,
}

async fn list_games(
    State(st): State<Shared>,
    Authed(host): Authed,
    Query(p): Query<Page>,
) -> Result<Json<Value>, ApiError> {
    let limit = p.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::BadRequest("limit must be 1..100".into()));
    }
    let (games, next) = store::list_games(&st.pool, host.host_id, limit, p.before).await?;
    Ok(Json(json!({ "games": games, "next": next })))
}

async fn get_game(
    State(st): State<Shared>,
    Authed(host): Authed,
    Path(room_id): Path<String>,
    Query(p): Query<Page>,
) -> Result<Json<Value>, ApiError> {
    let limit = p.limit.unwrap_or(100);
    let offset = p.offset.unwrap_or(0);
    if !(1..=1000).contains(&limit) || offset < 0 {
        return Err(ApiError::BadRequest(
            "limit must be 1..1000 and offset ≥ 0".into(),
        ));
    }
    let game = store::get_game(&st.pool, host.host_id, &room_id).await?;
    let results = store::results(&st.pool, game.id, offset, limit).await?;
    let next = (results.len() as i64 == limit).then_some(offset + limit);
    Ok(Json(
        json!({ "game": game, "results": results, "nextOffset": next }),
    ))
}

async fn results_csv(
    State(st): State<Shared>,
    Authed(host): Authed,
    Path(room_id): Path<String>,
) -> Result<Response, ApiError> {
    let game = store::get_game(&st.pool, host.host_id, &room_id).await?;
    if !game.results_stored {
        return Err(ApiError::ResultsPending(room_id));
    }
    let questions = game.questions_played.unwrap_or(0).max(0) as usize;
    let mut out = csv::header(questions);
    let mut offset = 0;
    const CHUNK: i64 = 5000;
    loop {
        let rows = store::results(&st.pool, game.id, offset, CHUNK).await?;
        for r in &rows {
            let answers: Vec<Option<ringside_lua::game::ExportedAnswer>> =
                serde_json::from_value(r.answers.clone()).unwrap_or_default();
            out.push_str(&csv::row(
                r.rank, &r.name, r.score, r.correct, &answers, questions,
            ));
        }
        if (rows.len() as i64) < CHUNK {
            break;
        }
        offset += CHUNK;
    }
    let filename = format!("ringside-{}-{}.csv", game.game_code, game.room_id);
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{filename}\""),
            ),
        ],
        out,
    )
        .into_response())
}
