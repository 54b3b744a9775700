//! The connection pool and the schema: versioned migrations applied on start, in order, each in its own
//! transaction, under an advisory lock (several instances may start at once). A database whose schema is
//! newer than this binary knows is refused: an old binary must not write to a schema it does not know.

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;

/// Why the database cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("bad database URL: {0}")]
    Url(#[source] tokio_postgres::Error),
    #[error("database: {0}")]
    Pg(#[from] tokio_postgres::Error),
    #[error("database pool: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("could not build the database pool: {0}")]
    Build(String),
    #[error(
        "the database schema is at version {found}, newer than this binary's {known}: \
         run a newer ringside-control (refusing to touch a schema it does not know)"
    )]
    NewerSchema { found: i32, known: i32 },
}

/// The migrations, in order; version = index + 1. Never edit one that has shipped: add a new one.
pub const MIGRATIONS: &[&str] = &[
    // 1: hosts, keys, quizzes, games, results
    r#"
    CREATE TABLE hosts (
        id          bigserial PRIMARY KEY,
        name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
        created_at  timestamptz NOT NULL DEFAULT now()
    );
    CREATE TABLE api_keys (
        key_id      text PRIMARY KEY,
        host_id     bigint NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,
        secret_hash bytea NOT NULL,
        created_at  timestamptz NOT NULL DEFAULT now(),
        revoked_at  timestamptz
    );
    CREATE INDEX api_keys_host ON api_keys(host_id);
    CREATE TABLE quizzes (
        id              text PRIMARY KEY,
        owner_id        bigint NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,
        visibility      text NOT NULL CHECK (visibility IN ('private', 'public')),
        title           text NOT NULL,
        question_count  integer NOT NULL,
        body            jsonb NOT NULL,
        version         integer NOT NULL DEFAULT 1,
        created_at      timestamptz NOT NULL DEFAULT now(),
        updated_at      timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX quizzes_owner ON quizzes(owner_id, updated_at DESC);
    CREATE INDEX quizzes_public ON quizzes(updated_at DESC) WHERE visibility = 'public';
    CREATE TABLE games (
        id                bigserial PRIMARY KEY,
        room_id           text NOT NULL UNIQUE,
        game_code         text NOT NULL,
        quiz_id           text NOT NULL,
        quiz_version      integer,
        quiz_title        text NOT NULL,
        host_id           bigint REFERENCES hosts(id) ON DELETE SET NULL,
        settings          jsonb NOT NULL DEFAULT '{}',
        question_count    integer NOT NULL,
        created_at        timestamptz NOT NULL DEFAULT now(),
        started_at        timestamptz,
        ended_at          timestamptz,
        end_reason        text,
        questions_played  integer,
        player_count      integer,
        results_stored_at timestamptz
    );
    CREATE INDEX games_host_newest ON games(host_id, id DESC);
    CREATE TABLE results (
        game_id        bigint NOT NULL REFERENCES games(id) ON DELETE CASCADE,
        player_id      text NOT NULL,
        name           text NOT NULL,
        avatar         integer NOT NULL,
        rank           integer NOT NULL,
        score          bigint NOT NULL,
        correct_count  integer NOT NULL,
        answers        jsonb NOT NULL,
        PRIMARY KEY (game_id, player_id)
    );
    CREATE INDEX results_by_rank ON results(game_id, rank, player_id);
    "#,
];

/// The schema version this binary writes.
pub fn known_version() -> i32 {
    MIGRATIONS.len() as i32
}

/// A pool of `size` connections to `url`.
pub fn pool(url: &str, size: usize) -> Result<Pool, DbError> {
    let config: tokio_postgres::Config = url.parse().map_err(DbError::Url)?;
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size)
        .wait_timeout(Some(std::time::Duration::from_secs(10)))
        .create_timeout(Some(std::time::Duration::from_secs(5)))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .map_err(|e| DbError::Build(e.to_string()))
}

/// Applies every migration this database lacks; returns the version it is at afterwards.
pub async fn migrate(pool: &Pool) -> Result<i32, DbError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    // One migrator at a time; the lock ends with the transaction.
    tx.execute("SELECT pg_advisory_xact_lock(7301)", &[])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version integer PRIMARY KEY,
            applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .await?;
    let found: i32 = tx
        .query_one(
            "SELECT coalesce(max(version), 0) FROM schema_migrations",
            &[],
        )
        .await?
        .get(0);
    let known = known_version();
    if found > known {
        return Err(DbError::NewerSchema { found, known });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let version = i as i32 + 1;
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO schema_migrations (version) VALUES ($1)",
            &[&version],
        )
        .await?;
        tracing::info!(version, "applied migration");
    }
    tx.commit().await?;
    Ok(known)
}
