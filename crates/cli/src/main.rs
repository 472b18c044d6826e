//! `quarry`: the command-line tool.
//!
//! This binary owns argument parsing, configuration files and environment
//! variables, logging setup, process supervision (`worker --nprocs`) and the
//! benchmarks. It must not hold scheduling or execution logic: each
//! subcommand assembles the library crates.

mod cmd;
mod config;
mod jobs;
mod keys;

use clap::{Parser, Subcommand};

/// quarry: run functions and commands over data in object stores, across
/// many machines.
///
/// Run a job file with nothing to start first (an embedded scheduler and
/// workers):
///
///   quarry run examples/wordcount/job.yaml
///
/// Or start a scheduler, point workers at it, then submit work:
///
///   quarry scheduler                                  # tcp://0.0.0.0:8786
///   quarry worker tcp://SCHEDULER:8786 --nthreads 1 --nprocs 12
///   quarry submit job.yaml --watch                    # or: quarry jobs, results JOB
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
    #[command(after_help = config::SOURCES_HELP)]
    Scheduler(cmd::scheduler::Args),
    /// Run a worker (or --nprocs supervised worker processes) for a scheduler.
    #[command(after_help = config::SOURCES_HELP)]
    Worker(cmd::worker::Args),
    /// Write CURVE key pairs for the scheduler, clients and workers.
    Keygen(cmd::keygen::Args),
    /// Check a job file and show its task count and first tasks; runs nothing.
    Validate(cmd::validate::Args),
    /// Run a job file on an embedded scheduler and workers in this process.
    Run(cmd::run::Args),
    /// Send a job file to a running scheduler (--watch to follow it).
    #[command(after_help = config::CLIENT_SOURCES_HELP)]
    Submit(cmd::submit::Args),
    /// List the scheduler's jobs.
    #[command(after_help = config::CLIENT_SOURCES_HELP)]
    Jobs(cmd::jobs::JobsArgs),
    /// Show a job's progress and metrics (or, without JOB, the scheduler's).
    #[command(after_help = config::CLIENT_SOURCES_HELP)]
    Status(cmd::jobs::StatusArgs),
    /// Cancel every unfinished task of a job.
    #[command(after_help = config::CLIENT_SOURCES_HELP)]
    Cancel(cmd::jobs::CancelArgs),
    /// Show one row per task of a job: state, result, outputs, metrics.
    #[command(after_help = config::CLIENT_SOURCES_HELP)]
    Results(cmd::results::Args),
    /// Run workers on a Slurm cluster (`quarry slurm script`).
    #[command(subcommand)]
    Slurm(cmd::slurm::Slurm),
    /// Look after a scheduler's journal (see docs/operations.md).
    #[command(subcommand)]
    Journal(cmd::journal::Journal),
    /// Measure quarry (see BENCHMARKS.md).
    #[command(subcommand)]
    Bench(cmd::bench::Bench),
}

/// Servers log what they do; the job commands print their own progress, so
/// only warnings and errors are logged unless RUST_LOG says otherwise.
fn init_logging(command: &Command) {
    let default = match command {
        Command::Scheduler(_) | Command::Worker(_) | Command::Bench(_) => "info",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.command);
    // Servers (and the benchmarks' client) run their event loop on one
    // thread: every message crosses from a socket's I/O thread to that
    // loop, and waking one known thread is cheaper than waking a pool that
    // then looks for work. The worker's tasks run on slot threads of their
    // own, and the scheduler hands heavy work (manifest encoding) to
    // blocking threads.
    let runtime = match &cli.command {
        Command::Scheduler(_) | Command::Worker(_) | Command::Bench(_) => {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
        }
        _ => tokio::runtime::Runtime::new(),
    };
    let runtime = match runtime {
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
            Command::Validate(args) => cmd::validate::run(args).await,
            Command::Run(args) => cmd::run::run(args).await,
            Command::Submit(args) => cmd::submit::run(args).await,
            Command::Jobs(args) => cmd::jobs::jobs(args).await,
            Command::Status(args) => cmd::jobs::status(args).await,
            Command::Cancel(args) => cmd::jobs::cancel(args).await,
            Command::Results(args) => cmd::results::run(args).await,
            Command::Slurm(slurm) => cmd::slurm::run(slurm),
            Command::Journal(command) => cmd::journal::run(command),
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
