//! `ringside-engine`: the timer service (see the library docs, `ringside_engine`), and its drift bench.
//!
//! ```text
//! ringside-engine --redis redis://127.0.0.1:6379/ --http 127.0.0.1:9100
//! ringside-engine --cluster --redis redis://10.0.0.1:7000 --redis redis://10.0.0.2:7000
//! ringside-engine bench --redis redis://127.0.0.1:6399/ --rooms 10000 --seconds 60
//! ```
//!
//! Exit codes: 0 after a graceful stop (SIGTERM / SIGINT), 2 for a bad configuration or a mismatched
//! Redis Functions library, 1 for anything else.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};
use ringside_engine::bench::BenchArgs;
use ringside_engine::config::LogFormat;
use ringside_engine::{Engine, EngineArgs, StartError};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;
use tracing::{error, info};

#[derive(Parser)]
#[command(
    name = "ringside-engine",
    version,
    about = "Fires Ringside's room timers from the partition timer streams"
)]
struct Cli {
    #[command(flatten)]
    engine: EngineArgs,
    /// Tokio worker threads (default: one per CPU).
    #[arg(long, env = "RINGSIDE_ENGINE_THREADS", global = true)]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Measure fire drift with N active rooms against a Redis you started (see perf/engine.md).
    Bench(BenchArgs),
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logs(cli.engine.log_format);
    let config = match cli.engine.clone().into_config() {
        Ok(c) => c,
        Err(e) => {
            error!("{e}");
            eprintln!("ringside-engine: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ringside-engine: cannot start the runtime: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    let code = runtime.block_on(async move {
        match cli.command {
            Some(Command::Bench(args)) => match ringside_engine::bench::run(config, args).await {
                Ok(()) => 0,
                Err(e) => {
                    error!("bench failed: {e:#}");
                    1
                }
            },
            None => serve(config).await,
        }
    });
    std::process::ExitCode::from(code)
}

async fn serve(config: ringside_engine::Config) -> u8 {
    let (mut sigterm, mut sigint) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(t), Ok(i)) => (t, i),
        _ => {
            error!("cannot install signal handlers");
            return 1;
        }
    };
    let (cancel_tx, cancel_rx) = watch::channel(false);
    let start = Engine::start_until(config, cancel_rx);
    tokio::pin!(start);
    let engine = tokio::select! {
        started = &mut start => started,
        _ = sigterm.recv() => { let _ = cancel_tx.send(true); start.await }
        _ = sigint.recv() => { let _ = cancel_tx.send(true); start.await }
    };
    let engine = match engine {
        Ok(engine) => engine,
        Err(StartError::Cancelled) => {
            info!("stopped during start-up");
            return 0;
        }
        Err(e @ StartError::Library(_))
        | Err(e @ StartError::Redis(_))
        | Err(e @ StartError::Http { .. }) => {
            error!("{e}");
            eprintln!("ringside-engine: {e}");
            return 2;
        }
    };
    tokio::select! {
        _ = sigterm.recv() => info!("SIGTERM"),
        _ = sigint.recv() => info!("SIGINT"),
    }
    engine.shutdown().await;
    0
}
