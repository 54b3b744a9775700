//! The drift bench (`ringside-engine bench`): filled in below.

use clap::Args;

/// Bench flags.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Active rooms.
    #[arg(long, default_value_t = 10_000)]
    pub rooms: usize,
    /// Measured seconds.
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
}

pub async fn run(_config: crate::Config, _args: BenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
