//! External programs and files the deployment tests use, installed by
//! `scripts/deploy-tools.sh`: found in the tools directory first, then on
//! `PATH` (Debian's packages put theirs in `/usr/bin` and `/usr/sbin`).

use crate::error::{HarnessError, Result};
use crate::minio::tools_dir;
use std::path::PathBuf;

/// The path of the program `name`.
pub fn tool(name: &str) -> Result<PathBuf> {
    let in_tools = tools_dir().join(name);
    if in_tools.is_file() {
        return Ok(in_tools);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| HarnessError::ToolMissing {
            name: name.to_owned(),
            tools_dir: tools_dir(),
        })
}

/// A data file the script keeps under the tools directory, such as
/// `k8s/kubernetes-v1.37.2-swagger.json`.
pub fn tool_file(relative: &str) -> Result<PathBuf> {
    let path = tools_dir().join(relative);
    if path.is_file() {
        Ok(path)
    } else {
        Err(HarnessError::ToolMissing {
            name: relative.to_owned(),
            tools_dir: tools_dir(),
        })
    }
}
