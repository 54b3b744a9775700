//! The public catalog in Redis: `quiz:{id}` holds exactly the public quizzes, so the edge's
//! `room:create` (which needs no key) can only host a public quiz. A private quiz never enters Redis
//! except as the copy inside a room its owner created. Visibility changes and deletions update the
//! catalog at once; [`sync`] repairs it on start and every minute (a Redis restart empties it).

use deadpool_postgres::Pool;
use ringside_lua::quiz::Quiz;
use ringside_lua::{Game, Redis};
use ringside_protocol::keys;

use crate::error::ApiError;
use crate::store;

fn redis_err(e: impl std::fmt::Display) -> ApiError {
    ApiError::Unavailable(format!("redis unavailable: {e}"))
}

/// Puts the quiz in the catalog when public, takes it out when private.
pub async fn apply(game: &Game, quiz: &Quiz, visibility: &str) -> Result<(), ApiError> {
    if visibility == "public" {
        game.store_quiz(quiz).await.map_err(redis_err)
    } else {
        remove(game, &quiz.id).await
    }
}

/// Takes quiz `id` out of the catalog.
pub async fn remove(game: &Game, id: &str) -> Result<(), ApiError> {
    let mut conn: Redis = game.conn();
    redis::cmd("DEL")
        .arg(keys::quiz(id))
        .query_async::<i64>(&mut conn)
        .await
        .map(drop)
        .map_err(redis_err)
}

/// Whether the catalog has `id` (a quiz imported straight into Redis with `ringside-quiz import`
/// has no row in PostgreSQL: its id is taken all the same).
pub async fn has(game: &Game, id: &str) -> Result<bool, ApiError> {
    let mut conn: Redis = game.conn();
    redis::cmd("EXISTS")
        .arg(keys::quiz(id))
        .query_async::<i64>(&mut conn)
        .await
        .map(|n| n == 1)
        .map_err(redis_err)
}

/// Makes the catalog match PostgreSQL: every public quiz stored, every private one absent. Returns
/// (published, removed).
pub async fn sync(pool: &Pool, game: &Game) -> Result<(usize, usize), ApiError> {
    let (public, private) = store::catalog(pool).await?;
    let mut published = 0;
    for (id, body) in public {
        match serde_json::from_value::<Quiz>(body) {
            Ok(quiz) => {
                game.store_quiz(&quiz).await.map_err(redis_err)?;
                published += 1;
            }
            Err(e) => {
                tracing::error!(quiz = %id, error = %e, "stored quiz does not parse; not published")
            }
        }
    }
    for id in &private {
        remove(game, id).await?;
    }
    Ok((published, private.len()))
}
