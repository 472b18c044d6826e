//! Reading job files, with errors shown as quarry-job renders them.

use quarry_job::{JobError, JobSpec};
use std::path::Path;
use std::process::ExitCode;

/// The exit status for a job file that does not parse or validate.
pub const INVALID_JOB_EXIT: u8 = 2;

/// Reads and validates a job file. On error, prints the error (file, line,
/// column, key and the offending line) to stderr and returns the exit
/// status to end with.
pub fn load_or_report(path: &Path) -> Result<JobSpec, ExitCode> {
    JobSpec::from_file(path).map_err(|error| {
        report(&error);
        ExitCode::from(INVALID_JOB_EXIT)
    })
}

fn report(error: &JobError) {
    eprintln!("error: {}", error.render());
}
