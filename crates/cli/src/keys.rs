//! Where peers find CURVE keys: flags, environment variables, config files.
//!
//! - `QUARRY_SERVER_KEY` / `--server-key`: the scheduler's public key, as
//!   Z85 text or the path of `scheduler.pub`.
//! - `QUARRY_KEY_FILE` / `--key-file`: this peer's key pair file
//!   (`client.key` or `worker.key` from `quarry keygen`).
//!
//! Both or neither must be given.

use anyhow::{bail, Context, Result};
use quarry_net::curve::decode_key;
use quarry_net::{CurveClientKeys, KeyPair};
use std::path::Path;

/// Builds client-side CURVE keys from the two settings.
pub fn client_keys(
    server_key: Option<&str>,
    key_file: Option<&Path>,
) -> Result<Option<CurveClientKeys>> {
    match (server_key, key_file) {
        (None, None) => Ok(None),
        (Some(_), None) | (None, Some(_)) => bail!(
            "CURVE needs both the scheduler's public key (--server-key / QUARRY_SERVER_KEY) and \
             this peer's key pair (--key-file / QUARRY_KEY_FILE); `quarry keygen` writes both"
        ),
        (Some(server), Some(file)) => {
            let server_text = if Path::new(server).is_file() {
                std::fs::read_to_string(server)
                    .with_context(|| format!("cannot read server key file {server}"))?
            } else {
                server.to_string()
            };
            let server_public = decode_key(&server_text, "the scheduler's public key")?;
            let keypair = KeyPair::read(file)?;
            Ok(Some(CurveClientKeys {
                server_public,
                keypair,
            }))
        }
    }
}
