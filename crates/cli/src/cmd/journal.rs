//! `quarry journal compact PATH`: rewriting a scheduler's journal without
//! the records of dropped jobs.

use anyhow::{Context, Result};
use std::path::PathBuf;
use std::process::ExitCode;

/// Journal maintenance.
#[derive(clap::Subcommand)]
pub enum Journal {
    /// Rewrite a journal as a snapshot of what it keeps (atomically: the
    /// old file stays until the new one is on disk). The scheduler using
    /// it must be stopped; a running scheduler compacts its journal by
    /// itself once dropped jobs are most of it.
    Compact(CompactArgs),
}

/// Options of `quarry journal compact`.
#[derive(clap::Args)]
pub struct CompactArgs {
    /// The journal file (`quarry scheduler --journal PATH`).
    path: PathBuf,
}

pub fn run(command: Journal) -> Result<ExitCode> {
    match command {
        Journal::Compact(args) => {
            let compacted = quarry_journal::compact(&args.path)
                .with_context(|| format!("cannot compact {}", args.path.display()))?;
            println!(
                "compacted {}: {} → {} bytes; {} jobs, {} tasks kept",
                args.path.display(),
                compacted.bytes_before,
                compacted.bytes_after,
                compacted.jobs,
                compacted.tasks
            );
            if compacted.torn_bytes > 0 {
                println!(
                    "  {} bytes of a torn tail (a write cut short by a crash) were dropped",
                    compacted.torn_bytes
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
