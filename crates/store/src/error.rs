use std::path::PathBuf;

/// Everything that can go wrong between quarry and an object store.
///
/// Messages name the URL (never a credential) and, where there is one, what
/// to do about it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL cannot be understood.
    #[error("invalid store URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The URL scheme names a store quarry does not support (yet).
    #[error(
        "{scheme}:// is not supported (in {url:?}); use s3://, hdfs://, file:// or a local path"
    )]
    UnsupportedScheme {
        /// The scheme, without `://`.
        scheme: String,
        /// The URL as given.
        url: String,
    },

    /// The Hadoop configuration asks for Kerberos, which quarry's HDFS
    /// client does not speak.
    #[error(
        "{url}: the Hadoop configuration asks for Kerberos (hadoop.security.authentication = \
         kerberos), which quarry does not support; use a cluster with simple authentication \
         (the user comes from HADOOP_USER_NAME)"
    )]
    KerberosUnsupported {
        /// The URL whose store was refused.
        url: String,
    },

    /// The Hadoop configuration files (`$HADOOP_CONF_DIR`) cannot be read.
    #[error("Hadoop configuration: {reason}")]
    HadoopConfig {
        /// What is wrong, naming the file.
        reason: String,
    },

    /// The store's endpoint cannot be used as configured; the reason says
    /// which setting to change.
    #[error("cannot reach {url}: {reason}")]
    Endpoint {
        /// The URL.
        url: String,
        /// What is wrong and what to set.
        reason: String,
    },

    /// The store for a URL could not be configured (for example a malformed
    /// endpoint).
    #[error("cannot configure the store for {url}: {source}")]
    Config {
        /// The URL whose store failed to build.
        url: String,
        /// The underlying error.
        #[source]
        source: object_store::Error,
    },

    /// A glob in a listing URL does not compile.
    #[error("invalid glob {pattern:?} in {url:?}: {source}")]
    Glob {
        /// The URL as given.
        url: String,
        /// The glob part of it.
        pattern: String,
        /// Why it does not compile.
        #[source]
        source: globset::Error,
    },

    /// The pinned object was modified after it was listed.
    #[error(
        "{url} changed since the job was submitted (pinned {pinned}, the store now has {current}); \
         resubmit the job to process the new version"
    )]
    Changed {
        /// The object's URL.
        url: String,
        /// The pin recorded at submit time.
        pinned: String,
        /// What the store reports now (`unknown` when the store only refused
        /// the conditional read).
        current: String,
    },

    /// The object does not exist (any more).
    #[error("{url} does not exist")]
    NotFound {
        /// The object's URL.
        url: String,
        /// The store's error.
        #[source]
        source: object_store::Error,
    },

    /// The store holds a different number of bytes than the reference says.
    #[error("{url} has {actual} bytes in the store but the reference says {expected}")]
    SizeMismatch {
        /// The object's URL.
        url: String,
        /// Size recorded in the reference.
        expected: u64,
        /// Size the store reports or delivered.
        actual: u64,
    },

    /// A listed object carries neither an ETag nor a version, so it cannot
    /// be pinned.
    #[error("{url} has neither an ETag nor a version id, so it cannot be pinned")]
    Unpinnable {
        /// The object's URL.
        url: String,
    },

    /// A local source file changed while it was being uploaded.
    #[error("{path} changed while it was being uploaded; the upload was aborted")]
    SourceChanged {
        /// The local file.
        path: PathBuf,
    },

    /// A local file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The local file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// The store refused the credentials, or they lack a permission. One
    /// line: the store's own code and message, then what to check; the
    /// response body is not repeated.
    #[error("the store refused access to {url}: {code}{message}; {hint}")]
    AccessDenied {
        /// The URL the request was about.
        url: String,
        /// The S3 error code (`SignatureDoesNotMatch`, `InvalidAccessKeyId`,
        /// `AccessDenied`, …), or the HTTP status when the body had none.
        code: String,
        /// `: ` and the store's message, or empty.
        message: String,
        /// Which setting to check.
        hint: &'static str,
    },

    /// No credentials were found anywhere the S3 client looks, so its last
    /// resort, the instance metadata service, was asked and failed.
    #[error(
        "no S3 credentials found for {url}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY \
         (or access_key_id and secret_access_key under [store]), or AWS_WEB_IDENTITY_TOKEN_FILE \
         with AWS_ROLE_ARN, or run on a host with an instance profile (the instance metadata \
         service at 169.254.169.254 did not give any)"
    )]
    NoCredentials {
        /// The URL the request was about.
        url: String,
    },

    /// Any other store request failure.
    #[error("store request for {url} failed: {source}")]
    Request {
        /// The URL the request was about.
        url: String,
        /// The store's error.
        #[source]
        source: object_store::Error,
    },
}

impl StoreError {
    /// Wraps an `object_store` error about `url`, keeping "not found" apart
    /// from other failures.
    pub fn from_store(url: &str, source: object_store::Error) -> Self {
        match source {
            object_store::Error::NotFound { .. } => StoreError::NotFound {
                url: url.to_string(),
                source,
            },
            object_store::Error::PermissionDenied { .. } => {
                access_denied(url, "HTTP 403", &source.to_string())
            }
            object_store::Error::Unauthenticated { .. } => {
                access_denied(url, "HTTP 401", &source.to_string())
            }
            source if source.to_string().contains("169.254.169.254") => StoreError::NoCredentials {
                url: url.to_string(),
            },
            source => StoreError::Request {
                url: url.to_string(),
                source,
            },
        }
    }
}

/// The one-line error for a refused request, from the text of
/// `object_store`'s error, which holds the S3 XML body (`<Code>`,
/// `<Message>`) after the HTTP status; `status` names the refusal when the
/// body has no code.
fn access_denied(url: &str, status: &str, text: &str) -> StoreError {
    let element = |name: &str| {
        let open = format!("<{name}>");
        let start = text.find(&open)? + open.len();
        let end = text[start..].find(&format!("</{name}>"))? + start;
        Some(text[start..end].trim().to_string())
    };
    let code = element("Code").unwrap_or_else(|| status.to_string());
    let hint = match code.as_str() {
        "SignatureDoesNotMatch" => {
            "check the secret key (AWS_SECRET_ACCESS_KEY, or secret_access_key under [store])"
        }
        "InvalidAccessKeyId" => {
            "check the access key id (AWS_ACCESS_KEY_ID, or access_key_id under [store])"
        }
        "ExpiredToken" | "InvalidToken" => {
            "the session token (AWS_SESSION_TOKEN) expired or is wrong"
        }
        // A HEAD's refusal has no body, so no code: either may be wrong.
        _ => {
            "check the access key id and secret (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, \
             or access_key_id and secret_access_key under [store]) and that they may use this \
             bucket"
        }
    };
    StoreError::AccessDenied {
        url: url.to_string(),
        message: element("Message")
            .map(|message| format!(": {message}"))
            .unwrap_or_default(),
        code,
        hint,
    }
}

/// Result alias for this crate.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_request_is_one_line_with_the_code_and_what_to_check() {
        let body = "Client error with status 403 Forbidden: <?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated does not match the signature you provided.</Message><Key>a</Key><RequestId>1</RequestId></Error>";
        let error = access_denied("s3://b/a", "HTTP 403", body).to_string();
        assert_eq!(
            error,
            "the store refused access to s3://b/a: SignatureDoesNotMatch: The request signature \
             we calculated does not match the signature you provided.; check the secret key \
             (AWS_SECRET_ACCESS_KEY, or secret_access_key under [store])"
        );
        let bare = access_denied("s3://b/a", "HTTP 403", "status 403 Forbidden").to_string();
        assert!(
            bare.contains("HTTP 403; check the access key id and secret"),
            "{bare}"
        );
    }
}
