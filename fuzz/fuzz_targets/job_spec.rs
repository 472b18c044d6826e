//! Fuzzes job-spec parsing (`quarry run` and `quarry submit` read these
//! files from users) and what the CLI does next with a valid spec. The
//! properties live in checks/job_spec.rs, shared with the regression test.

#![no_main]

#[path = "../checks/job_spec.rs"]
mod checks;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    checks::check_job_spec(data);
});
