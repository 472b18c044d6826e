//! Finding the `quarry` binary that CLI tests run.
//!
//! `env!("CARGO_BIN_EXE_quarry")` exists only inside the cli crate's own tests, so
//! tests here look for the binary in cargo's target directory instead.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Environment variable naming the `quarry` binary explicitly.
const QUARRY_BIN_ENV: &str = "QUARRY_BIN";

/// A command running the `quarry` binary with none of the test machine's
/// `QUARRY_*` settings (other than `QUARRY_BIN`), so that a test sees only
/// the settings it gives.
pub fn quarry_command() -> Command {
    let mut command = Command::new(quarry_bin());
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("QUARRY_") && name != QUARRY_BIN_ENV {
            command.env_remove(&name);
        }
    }
    command
}

/// The path of the built `quarry` binary.
///
/// Looks at `$QUARRY_BIN`, then beside the running test executable (the profile
/// directory it was built into), then in `$CARGO_TARGET_DIR` and the workspace's
/// `target/` (debug before release in debug builds, the other way round in release
/// builds).
///
/// # Panics
/// When no binary is found, with a message saying to run
/// `cargo build -p quarry-cli` first; a test cannot do anything useful without it.
pub fn quarry_bin() -> PathBuf {
    if let Some(explicit) = std::env::var_os(QUARRY_BIN_ENV) {
        let explicit = PathBuf::from(explicit);
        assert!(
            explicit.is_file(),
            "{QUARRY_BIN_ENV}={} is not a file",
            explicit.display()
        );
        return explicit;
    }
    let candidates = candidate_paths();
    if let Some(found) = candidates.iter().find(|path| path.is_file()) {
        return found.clone();
    }
    let looked: Vec<String> = candidates
        .iter()
        .map(|path| path.display().to_string())
        .collect();
    panic!(
        "the quarry binary was not found (looked at: {}); build it first with \
         `cargo build -p quarry-cli` (add --release for release-mode tests), \
         or set {QUARRY_BIN_ENV}",
        looked.join(", ")
    );
}

/// Every place the binary may be, most specific first.
fn candidate_paths() -> Vec<PathBuf> {
    let binary = format!("quarry{}", std::env::consts::EXE_SUFFIX);
    let mut dirs = Vec::new();
    // Test executables live in `<target>/<profile>/deps/`.
    if let Ok(test_exe) = std::env::current_exe() {
        if let Some(profile_dir) = test_exe.parent().and_then(Path::parent) {
            dirs.push(profile_dir.to_path_buf());
        }
    }
    let profiles = if cfg!(debug_assertions) {
        ["debug", "release"]
    } else {
        ["release", "debug"]
    };
    let workspace_target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target");
    let target_dirs = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .into_iter()
        .chain([workspace_target]);
    for target in target_dirs {
        for profile in profiles {
            dirs.push(target.join(profile));
        }
    }
    let mut paths: Vec<PathBuf> = Vec::new();
    for dir in dirs {
        let path = dir.join(&binary);
        if !paths.contains(&path) {
            paths.push(path);
        }
    }
    paths
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_start_beside_the_test_executable() {
        let test_exe = std::env::current_exe().unwrap();
        let profile_dir = test_exe.parent().unwrap().parent().unwrap();
        let candidates = candidate_paths();
        assert_eq!(candidates[0], profile_dir.join("quarry"));
        assert!(candidates
            .iter()
            .any(|path| path.ends_with("target/debug/quarry")));
        assert!(candidates
            .iter()
            .any(|path| path.ends_with("target/release/quarry")));
    }
}
