//! `ringside-control`: see the crate docs (`src/lib.rs`) and `docs/api.md`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser as _;
use ringside_control::auth::FailureLimiter;
use ringside_control::config::{Cli, Command, HostCommand, QuizCommand, ServeArgs};
use ringside_control::{api, catalog, db, store, writer};
use ringside_lua::{Game, Redis};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing(cli.log_json);
    match &cli.command {
        Command::Serve(args) => serve(&cli, args.clone()).await,
        Command::Migrate => {
            let pool = db::pool(&cli.database_url, 2)?;
            let v = db::migrate(&pool).await?;
            println!("schema at version {v}");
            Ok(())
        }
        Command::Host(HostCommand::Create { name, key_file }) => {
            let pool = db::pool(&cli.database_url, 2)?;
            db::migrate(&pool).await?;
            let (host, key) = store::create_host(&pool, name)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            if let Some(path) = key_file {
                write_secret(path, &key)?;
            }
            println!(
                "{}",
                serde_json::json!({ "hostId": host.host_id, "name": host.name, "apiKey": key })
            );
            eprintln!("ringside-control: the API key is shown once; only its hash is stored");
            Ok(())
        }
        Command::Host(HostCommand::List) => {
            let pool = db::pool(&cli.database_url, 2)?;
            for h in store::list_hosts(&pool)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?
            {
                println!("{}\t{}", h.host_id, h.name);
            }
            Ok(())
        }
        Command::Quiz(QuizCommand::Import {
            host_id,
            visibility,
            files,
        }) => {
            let pool = db::pool(&cli.database_url, 2)?;
            db::migrate(&pool).await?;
            let game = Game::new(
                Redis::connect(&cli.redis, cli.cluster)
                    .await
                    .context("connecting to Redis")?,
            );
            let visibility =
                store::check_visibility(visibility).map_err(|e| anyhow::anyhow!("{e}"))?;
            for f in files {
                let text = std::fs::read_to_string(f)
                    .with_context(|| format!("reading {}", f.display()))?;
                let quiz = ringside_lua::Quiz::from_json(&text)
                    .with_context(|| f.display().to_string())?;
                quiz.validate().with_context(|| f.display().to_string())?;
                let r = match store::insert_quiz(&pool, *host_id, visibility, &quiz).await {
                    Err(ringside_control::error::ApiError::QuizIdTaken(_)) => {
                        store::update_quiz(&pool, *host_id, &quiz.id, Some(visibility), Some(&quiz))
                            .await
                            .map(|r| r.summary)
                    }
                    other => other,
                }
                .map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?;
                catalog::apply(&game, &quiz, visibility)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                println!(
                    "imported {} ({} questions, {}, version {})",
                    r.id, r.question_count, r.visibility, r.version
                );
            }
            Ok(())
        }
    }
}

async fn serve(cli: &Cli, args: ServeArgs) -> anyhow::Result<()> {
    let pool = db::pool(&cli.database_url, args.pool_size)?;
    let version = db::migrate(&pool).await.context("applying migrations")?;
    tracing::info!(version, "database schema ready");
    let mut redis = Redis::connect(&cli.redis, cli.cluster)
        .await
        .context("connecting to Redis")?;
    ringside_lua::check_version(&mut redis)
        .await
        .context("the ringside Functions library (load it with `ringside-quiz load`)")?;
    let game = Game::new(redis);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);

    // The public catalog in Redis follows PostgreSQL (repairs a Redis restart within a minute).
    {
        let (pool, game, mut stop) = (pool.clone(), game.clone(), stop_rx.clone());
        tokio::spawn(async move {
            loop {
                match catalog::sync(&pool, &game).await {
                    Ok((p, r)) => tracing::debug!(published = p, private = r, "catalog synced"),
                    Err(e) => tracing::warn!(error = %e, "catalog sync failed"),
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(60)) => {}
                    _ = stop.changed() => return,
                }
            }
        });
    }
    let writer_task = (!args.no_writer).then(|| {
        let cfg = writer::WriterConfig {
            name: args.writer_name.clone(),
            poll: Duration::from_millis(args.writer_poll_ms.max(10)),
            page: args.export_page as usize,
            page_pause: Duration::from_millis(args.export_pause_ms),
            crash_after_pages: args.test_crash_after_pages,
        };
        tokio::spawn(writer::run(
            pool.clone(),
            game.clone(),
            cfg,
            stop_rx.clone(),
        ))
    });

    let ops_token = match &args.ops_token_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading --ops-token-file {}", path.display()))?
                .trim()
                .to_string(),
        ),
        None => None,
    };
    let limiter = Arc::new(FailureLimiter::new(
        args.auth_failures_burst,
        args.auth_failures_per_minute,
    ));
    let ops = ringside_control::ops::OpsState::new(
        game.clone(),
        ops_token,
        limiter.clone(),
        args.ops_scrape.clone(),
        &cli.redis,
    );
    let state = Arc::new(api::AppState {
        pool,
        game,
        limiter,
        public_url: args.public_url.clone(),
        max_body: args.max_body_bytes,
    });
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    tracing::info!(addr = %listener.local_addr()?, "control plane listening");
    axum::serve(
        listener,
        api::router(state)
            .merge(ringside_control::ops::router(ops))
            .into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    })
    .await?;
    if let Some(t) = writer_task {
        let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
    }
    Ok(())
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
}

fn write_secret(path: &std::path::Path, key: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    writeln!(f, "{key}")?;
    Ok(())
}

fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        b.json().init();
    } else {
        b.init();
    }
}
