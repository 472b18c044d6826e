//! `quarry`: the command-line tool.
//!
//! This binary owns argument parsing, configuration files and environment
//! variables, logging setup, process supervision (`worker --nprocs`) and the
//! benchmarks. It must not hold scheduling or execution logic: each
//! subcommand assembles the library crates.

mod cmd;
mod config;
mod keys;

use clap::{Parser, Subcommand};

/// quarry: run functions and commands over data in object stores, across
/// many machines.
///
/// Start a scheduler, point workers at it, then submit work:
///
///   quarry scheduler                                  # tcp://0.0.0.0:8786
///   quarry worker tcp://SCHEDULER:8786 --nthreads 1 --nprocs 12
///   cargo run --example inc -- tcp://SCHEDULER:8786
///
/// Logs go to stderr; set RUST_LOG (for example RUST_LOG=debug) for more.
#[derive(Parser)]
#[command(name = "quarry", version, about, long_about, verbatim_doc_comment)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the scheduler: it routes tasks to workers (like dask-scheduler).
    Scheduler(cmd::scheduler::Args),
    /// Run a worker (or --nprocs supervised worker processes) for a scheduler.
    Worker(cmd::worker::Args),
    /// Write CURVE key pairs for the scheduler, clients and workers.
    Keygen(cmd::keygen::Args),
    /// Measure quarry (see BENCHMARKS.md).
    #[command(subcommand)]
    Bench(cmd::bench::Bench),
}

fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logging();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Scheduler(args) => cmd::scheduler::run(args).await,
            Command::Worker(args) => cmd::worker::run(args).await,
            Command::Keygen(args) => cmd::keygen::run(args),
            Command::Bench(bench) => cmd::bench::run(bench).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
