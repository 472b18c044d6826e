//! CURVE key pairs, key files and authorized-key lists.
//!
//! Key files hold Z85 text (ZeroMQ's own encoding). A `NAME.key` file holds
//! both halves and is written with mode 0600; `NAME.pub` holds only the
//! public key and may be shared. A scheduler's key directory also holds
//! `authorized-clients` and `authorized-workers`: one Z85 public key per
//! line (anything after the key and a space is a comment), and lines starting
//! with `#` are comments.

use crate::NetError;
use sha2::{Digest, Sha256};
use std::fmt;
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// A CURVE key pair. Its `Debug` never shows the secret half.
#[derive(Clone)]
pub struct KeyPair {
    /// The public key (32 bytes).
    pub public: [u8; 32],
    secret: [u8; 32],
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyPair")
            .field("public", &fingerprint(&self.public))
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl KeyPair {
    /// A fresh random key pair from libzmq (libsodium underneath).
    pub fn generate() -> Result<KeyPair, NetError> {
        let pair = zmq::CurveKeyPair::new().map_err(crate::zmq_err("zmq_curve_keypair"))?;
        Ok(KeyPair {
            public: pair.public_key,
            secret: pair.secret_key,
        })
    }

    /// Builds a pair from Z85 texts.
    pub fn from_z85(public: &str, secret: &str) -> Result<KeyPair, NetError> {
        Ok(KeyPair {
            public: decode_key(public, "public key")?,
            secret: decode_key(secret, "secret key")?,
        })
    }

    pub(crate) fn secret_bytes(&self) -> &[u8; 32] {
        &self.secret
    }

    /// The public key as Z85 text.
    pub fn public_z85(&self) -> String {
        encode_key(&self.public)
    }

    /// Reads a `NAME.key` file (see the module docs).
    pub fn read(path: &Path) -> Result<KeyPair, NetError> {
        let text = fs::read_to_string(path)
            .map_err(|e| NetError::Key(format!("cannot read key file {}: {e}", path.display())))?;
        let field = |name: &str| {
            text.lines()
                .filter_map(|l| l.trim().strip_prefix(name))
                .filter_map(|rest| rest.trim().strip_prefix('='))
                .map(|v| v.trim().trim_matches('"').to_string())
                .next()
                .ok_or_else(|| {
                    NetError::Key(format!("key file {} has no `{name}` line", path.display()))
                })
        };
        KeyPair::from_z85(&field("public-key")?, &field("secret-key")?)
            .map_err(|e| NetError::Key(format!("key file {}: {e}", path.display())))
    }

    /// Writes `DIR/NAME.key` (mode 0600) and `DIR/NAME.pub`.
    pub fn write(&self, dir: &Path, name: &str) -> Result<(PathBuf, PathBuf), NetError> {
        fs::create_dir_all(dir)
            .map_err(|e| NetError::Key(format!("cannot create {}: {e}", dir.display())))?;
        let key_path = dir.join(format!("{name}.key"));
        let pub_path = dir.join(format!("{name}.pub"));
        let secret_text = format!(
            "# quarry CURVE key pair: keep this file secret\npublic-key = \"{}\"\nsecret-key = \"{}\"\n",
            self.public_z85(),
            encode_key(&self.secret)
        );
        write_private(&key_path, secret_text.as_bytes())?;
        fs::write(&pub_path, format!("{}\n", self.public_z85()))
            .map_err(|e| NetError::Key(format!("cannot write {}: {e}", pub_path.display())))?;
        Ok((key_path, pub_path))
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), NetError> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| NetError::Key(format!("cannot write {}: {e}", path.display())))?;
    file.write_all(bytes)
        .map_err(|e| NetError::Key(format!("cannot write {}: {e}", path.display())))
}

/// Decodes a 40-character Z85 key.
pub fn decode_key(text: &str, what: &str) -> Result<[u8; 32], NetError> {
    let text = text.trim();
    let bytes = zmq::z85_decode(text)
        .map_err(|_| NetError::Key(format!("{what} is not valid Z85 text")))?;
    bytes
        .try_into()
        .map_err(|_| NetError::Key(format!("{what} must be 40 Z85 characters (32 bytes)")))
}

/// Encodes a 32-byte key as Z85.
pub fn encode_key(key: &[u8; 32]) -> String {
    // 32 bytes is a multiple of 4, the only thing z85 encoding requires.
    zmq::z85_encode(key).unwrap_or_default()
}

/// A short, non-secret name for a public key, used in logs: the first 16
/// hex digits of its SHA-256.
pub fn fingerprint(public: &[u8; 32]) -> String {
    hex::encode(&Sha256::digest(public)[..8])
}

/// Reads a list of Z85 public keys, one per line. A missing file is an
/// empty list.
pub fn read_authorized(path: &Path) -> Result<Vec<[u8; 32]>, NetError> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(NetError::Key(format!(
                "cannot read {}: {e}",
                path.display()
            )))
        }
    };
    text.lines()
        .enumerate()
        // Z85 uses `#`, so a comment is a whole line starting with `#`, or
        // anything after the key and whitespace.
        .map(|(i, l)| (i, l.split_whitespace().next().unwrap_or("")))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
        .map(|(i, l)| {
            decode_key(l, "public key")
                .map_err(|e| NetError::Key(format!("{}:{}: {e}", path.display(), i + 1)))
        })
        .collect()
}

/// Appends a public key to an authorized-keys file.
pub fn authorize(path: &Path, public: &[u8; 32], comment: &str) -> Result<(), NetError> {
    let mut file = fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| NetError::Key(format!("cannot write {}: {e}", path.display())))?;
    writeln!(file, "{}  # {comment}", encode_key(public))
        .map_err(|e| NetError::Key(format!("cannot write {}: {e}", path.display())))
}

/// What a scheduler needs to be a CURVE server.
#[derive(Clone, Debug)]
pub struct CurveServerKeys {
    /// The scheduler's own key pair.
    pub keypair: KeyPair,
    /// Public keys admitted as clients.
    pub authorized_clients: Vec<[u8; 32]>,
    /// Public keys admitted as workers.
    pub authorized_workers: Vec<[u8; 32]>,
}

/// File names inside a key directory.
pub mod files {
    /// The scheduler's key pair.
    pub const SCHEDULER_KEY: &str = "scheduler.key";
    /// The scheduler's public key, to hand to clients and workers.
    pub const SCHEDULER_PUB: &str = "scheduler.pub";
    /// Public keys admitted as clients.
    pub const AUTHORIZED_CLIENTS: &str = "authorized-clients";
    /// Public keys admitted as workers.
    pub const AUTHORIZED_WORKERS: &str = "authorized-workers";
}

impl CurveServerKeys {
    /// Loads `scheduler.key`, `authorized-clients` and `authorized-workers`
    /// from a key directory made by `quarry keygen`.
    pub fn load_dir(dir: &Path) -> Result<CurveServerKeys, NetError> {
        let keypair = KeyPair::read(&dir.join(files::SCHEDULER_KEY))?;
        Ok(CurveServerKeys {
            keypair,
            authorized_clients: read_authorized(&dir.join(files::AUTHORIZED_CLIENTS))?,
            authorized_workers: read_authorized(&dir.join(files::AUTHORIZED_WORKERS))?,
        })
    }
}

/// What a client or worker needs to talk to a CURVE scheduler.
#[derive(Clone, Debug)]
pub struct CurveClientKeys {
    /// The scheduler's public key.
    pub server_public: [u8; 32],
    /// The peer's own key pair.
    pub keypair: KeyPair,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn key_files_round_trip_with_private_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let pair = KeyPair::generate().unwrap();
        let (key, public) = pair.write(dir.path(), "client").unwrap();
        let mode = fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let back = KeyPair::read(&key).unwrap();
        assert_eq!(back.public, pair.public);
        assert_eq!(back.secret_bytes(), pair.secret_bytes());
        let listed = fs::read_to_string(public).unwrap();
        assert_eq!(decode_key(&listed, "k").unwrap(), pair.public);
    }

    #[test]
    fn debug_output_hides_the_secret() {
        let pair = KeyPair::generate().unwrap();
        let shown = format!("{pair:?}");
        assert!(!shown.contains(&encode_key(pair.secret_bytes())));
        assert!(shown.contains("redacted"));
    }

    #[test]
    fn authorized_lists_skip_comments_and_report_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("authorized-clients");
        let pair = KeyPair::generate().unwrap();
        authorize(&path, &pair.public, "alice").unwrap();
        assert_eq!(read_authorized(&path).unwrap(), vec![pair.public]);
        fs::write(&path, "# nobody\nnot-a-key\n").unwrap();
        let err = read_authorized(&path).unwrap_err().to_string();
        assert!(err.contains("authorized-clients:2"), "{err}");
    }
}
