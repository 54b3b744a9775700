//! `ringside-quiz`: validate quiz JSON files and import them into Redis at `quiz:{id}`.
//!
//! ```text
//! ringside-quiz validate quizzes/*.json
//! ringside-quiz import quizzes/*.json --redis redis://127.0.0.1:6379/
//! ringside-quiz import quizzes/*.json --redis redis://10.0.0.1:7000/ --redis redis://10.0.0.2:7000/ --cluster
//! ```
//! `import` also loads the Functions library where it is missing or older (`--no-load` to skip).
//! Exit codes: 0 ok, 1 an invalid quiz (nothing is imported), 2 Redis failed.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};
use ringside_lua::{ensure_loaded, Game, Quiz, Redis};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "ringside-quiz", about = "Validate and import Ringside quizzes")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the library and the catalog live.
#[derive(clap::Args)]
struct RedisArgs {
    /// Redis URL (repeat for several cluster nodes).
    #[arg(
        long = "redis",
        env = "RINGSIDE_REDIS",
        default_value = "redis://127.0.0.1:6379/"
    )]
    redis: Vec<String>,
    /// The URLs are Redis Cluster nodes.
    #[arg(long)]
    cluster: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Check quiz files without touching Redis.
    Validate { files: Vec<PathBuf> },
    /// Load (or upgrade) the Functions library only.
    Load {
        #[command(flatten)]
        target: RedisArgs,
    },
    /// Validate every file, then store each at quiz:{id}: the PUBLIC catalog, which anyone can host
    /// through `room:create` (and so learn its answers). Private quizzes belong in the control plane
    /// (`ringside-control quiz import`, or `POST /api/quizzes`).
    Import {
        files: Vec<PathBuf>,
        #[command(flatten)]
        target: RedisArgs,
        /// Do not load/upgrade the Functions library.
        #[arg(long)]
        no_load: bool,
    },
}

fn read_all(files: &[PathBuf]) -> Result<Vec<Quiz>, String> {
    if files.is_empty() {
        return Err("no quiz files given".into());
    }
    files
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(f).map_err(|e| format!("{}: {e}", f.display()))?;
            Quiz::from_json(&text).map_err(|e| format!("{}: {e}", f.display()))
        })
        .collect()
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let (files, target) = match cli.command {
        Command::Load {
            target: RedisArgs { redis, cluster },
        } => {
            let r: anyhow::Result<()> = async {
                let mut conn = Redis::connect(&redis, cluster).await?;
                println!("library: {:?}", ensure_loaded(&mut conn).await?);
                Ok(())
            }
            .await;
            return match r {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::from(2)
                }
            };
        }
        Command::Validate { files } => (files, None),
        Command::Import {
            files,
            target: RedisArgs { redis, cluster },
            no_load,
        } => (files, Some((redis, cluster, no_load))),
    };
    let quizzes = match read_all(&files) {
        Ok(q) => q,
        Err(e) => {
            eprintln!("invalid: {e}");
            return ExitCode::from(1);
        }
    };
    let Some((urls, cluster, no_load)) = target else {
        for q in &quizzes {
            println!("ok: {} ({} questions)", q.id, q.questions.len());
        }
        return ExitCode::SUCCESS;
    };
    let result: anyhow::Result<()> = async {
        let mut redis = Redis::connect(&urls, cluster).await?;
        if !no_load {
            let outcome = ensure_loaded(&mut redis).await?;
            println!("library: {outcome:?}");
        }
        let game = Game::new(redis);
        for q in &quizzes {
            game.store_quiz(q).await?;
            println!(
                "imported: {} ({} questions) at {}",
                q.id,
                q.questions.len(),
                ringside_protocol::keys::quiz(&q.id)
            );
        }
        Ok(())
    }
    .await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
