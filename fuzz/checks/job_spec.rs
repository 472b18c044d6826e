//! The properties the `job_spec` fuzz target checks, shared with the
//! regression test (crates/job/tests/fuzz_regressions.rs) so that both
//! check exactly the same thing.

use quarry_command::output_object_key;
use quarry_job::JobSpec;
use std::path::Path;

/// Tasks expanded per input: enough to cover keys and parameters, few
/// enough that a million-task grid stays fast.
const TASKS_PER_INPUT: usize = 64;

/// Parses `bytes` as a job file and does what the CLI does next with a
/// valid spec: summarise it, expand its first tasks, build function
/// arguments and command templates. Returns the spec when it parsed.
///
/// Panics when a property breaks: parsing or expanding panicked, an error
/// has no position in the file, a parsed
/// command job has an invalid template, or a task key is refused by the
/// output-key rule (so a task could write outside its own directory).
pub fn check_job_spec(bytes: &[u8]) -> Option<JobSpec> {
    let text = std::str::from_utf8(bytes).ok()?;
    let spec = match JobSpec::from_yaml(text, "fuzz.yaml", Path::new("/fuzz/jobs")) {
        Ok(spec) => spec,
        Err(e) if e.position.is_none() => panic!("a parse error has no position: {e}"),
        Err(_) => return None,
    };
    let _ = spec.task_count();
    let _ = spec.summary(4);
    if let Some(template) = spec.command_template() {
        if let Err(e) = template.validate() {
            panic!("a parsed command job has an invalid template: {e}");
        }
        let _ = template.to_context();
    }
    // Prefix jobs are listed and keyed by the planner (quarry-plan), whose
    // keys go through `sanitize_key`, which the task_key target covers.
    let tasks: Vec<_> = match spec.expand() {
        Ok(tasks) => tasks.take(TASKS_PER_INPUT).collect(),
        Err(_) => Vec::new(),
    };
    for task in &tasks {
        let _ = spec.function_args(task);
        let _ = task.params_json();
        if let Err(e) = output_object_key(&task.key, "out.txt") {
            panic!("task key {:?} breaks the output-key rule: {e}", task.key);
        }
    }
    Some(spec)
}
