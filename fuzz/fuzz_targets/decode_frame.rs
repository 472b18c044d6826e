//! Fuzzes the wire decoder the scheduler, workers and clients run on every
//! frame they receive, with the limits they run with. The property lives in
//! checks/frame.rs, shared with the corpus regression test.

#![no_main]

#[path = "../checks/frame.rs"]
mod checks;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    checks::check_frame(data);
});
