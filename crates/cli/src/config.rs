//! Configuration files (TOML). A value given on the command line or in the
//! environment wins over the file; the file wins over built-in defaults.
//! `configs/` in the repository has a commented example of each.

use anyhow::{Context, Result};
use serde::de::DeserializeOwned;
use std::path::Path;

/// Reads a TOML config file into `T`, refusing unknown keys.
pub fn read<T: DeserializeOwned + Default>(path: Option<&Path>) -> Result<T> {
    let Some(path) = path else {
        return Ok(T::default());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
}

/// Parses sizes like `10GiB`, `512MB` or `1048576`: the same rule job
/// files use.
pub use quarry_job::parse_size;
