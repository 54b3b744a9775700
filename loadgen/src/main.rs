//! `ringside-loadgen`: see `loadgen/README.md` and `ringside-loadgen --help`.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser as _;
use ringside_loadgen::cli::{Cli, Cmd};

fn main() {
    let cli = Cli::parse();
    let code = match cli.cmd {
        Cmd::Worker => match ringside_loadgen::worker::main() {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("ringside-loadgen worker: {e:#}");
                1
            }
        },
        Cmd::ReportHtml { dir } => match ringside_loadgen::cli::report_html(&dir) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("ringside-loadgen report-html: {e:#}");
                1
            }
        },
        Cmd::HlogMerge { files } => match ringside_loadgen::cli::hlog_merge(&files) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("ringside-loadgen hlog-merge: {e:#}");
                1
            }
        },
        cmd => {
            let (scenario, args) = cmd.scenario().expect("every other command is a scenario");
            match ringside_loadgen::coordinator::run(scenario, args) {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("ringside-loadgen: {e:#}");
                    1
                }
            }
        }
    };
    std::process::exit(code);
}
