//! Fuzzes the task-key and output-key rules that keep every task's outputs
//! inside its own directory. The properties live in checks/task_key.rs, shared
//! with the regression test.

#![no_main]

#[path = "../checks/task_key.rs"]
mod checks;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some((raw_key, relative, force_hash)) = checks::split_task_key_input(data) {
        checks::check_task_key(raw_key, relative, force_hash);
    }
});
