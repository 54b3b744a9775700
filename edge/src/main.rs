//! `ringside-edge` binary: parses the config, raises RLIMIT_NOFILE, starts the workers (or
//! `--processes` copies of itself), and drains on SIGTERM/SIGINT.
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser as _;
use ringside_edge::cli::{Cli, Command};
use ringside_edge::game::GameFactory;
use ringside_edge::session::SessionFactory;
use ringside_edge::{launcher, server, sys, EchoFactory};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn init_tracing(json: bool) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let b = tracing_subscriber::fmt().with_env_filter(filter);
    if json {
        b.json().init();
    } else {
        b.init();
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_json);
    match sys::shorten_allocator_purge_delay() {
        Some(ms) => tracing::debug!(purge_delay_ms = ms, "mimalloc purge delay"),
        None => tracing::info!("mimalloc purge delay left as configured"),
    }
    if !cli.allow_thp {
        // Before the workers touch most of the heap; inherited by `--processes` children.
        if let Err(e) = sys::disable_thp() {
            tracing::warn!(error = %e, "could not disable transparent huge pages");
        }
    }
    if let Some(Command::GenDevCert { out }) = &cli.command {
        return match ringside_edge::tls::gen_dev_cert(out) {
            Ok((c, k)) => {
                println!("wrote {} and {}", c.display(), k.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("gen-dev-cert: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let cfg = cli.to_config();
    if let Err(e) = cfg.validate() {
        eprintln!("ringside-edge: {e}");
        return ExitCode::from(2);
    }
    if !cfg.echo && cfg.app_ping_interval >= cfg.ping_interval {
        // Allowed (a short keepalive may be wanted), but every pinging client then gets a WebSocket ping
        // too: twice the frames the app ping was meant to cost (perf/edge.md "Pings").
        tracing::warn!(
            app_ping_interval = ?cfg.app_ping_interval,
            ping_interval = ?cfg.ping_interval,
            "--app-ping-interval is not shorter than --ping-interval: clients get both pings"
        );
    }
    match sys::raise_nofile_limit() {
        Ok(l) => tracing::info!(
            soft_before = l.soft_before,
            soft = l.soft,
            hard = l.hard,
            "RLIMIT_NOFILE"
        ),
        Err(e) => tracing::warn!(error = %e, "could not raise RLIMIT_NOFILE"),
    }
    if cfg.processes > 1 {
        return match launcher::run(cfg.processes) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("ringside-edge: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    // Block SIGTERM/SIGINT before any thread starts, so only the signal thread receives them.
    let signals = match sys::TermSignals::block() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ringside-edge: blocking signals: {e}");
            return ExitCode::FAILURE;
        }
    };
    let factory: Arc<dyn SessionFactory> = if cfg.echo {
        Arc::new(EchoFactory)
    } else {
        // Connects to Redis and refuses to run against a Functions library of another version.
        match GameFactory::start(cli.game_config(), cfg.threads) {
            Ok(f) => Arc::new(f),
            Err(e) => {
                eprintln!("ringside-edge: {e:#}");
                return ExitCode::FAILURE;
            }
        }
    };
    let srv = match server::start(cfg, factory) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ringside-edge: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let drainer = srv.drainer();
    let _ = std::thread::Builder::new()
        .name("edge-signals".into())
        .spawn(move || loop {
            let sig = signals.wait();
            tracing::info!(signal = sig, "signal received");
            drainer.drain();
        });
    srv.join();
    tracing::info!("edge stopped");
    ExitCode::SUCCESS
}
