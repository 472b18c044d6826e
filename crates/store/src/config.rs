use serde::{Deserialize, Deserializer};
use std::fmt;
use std::time::Duration;

/// How long one request to S3 may take, unless configured: a stalled or
/// silent endpoint fails the request after this, not after minutes.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long connecting to an S3 endpoint may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Retries of one failed S3 request (server errors, timeouts, resets),
/// within [`RETRY_DEADLINE`] from its first attempt. The task's own retries
/// take over from there; there is no other retry layer.
const REQUEST_RETRIES: usize = 3;
const RETRY_DEADLINE: Duration = Duration::from_secs(120);

/// A credential that must never be printed: `Debug` and `Display` show
/// `***`; only [`Secret::expose`] hands out the value.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for handing to the store client.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// S3 settings: where the endpoint is and how to authenticate.
///
/// Built from the standard `AWS_*` environment variables with
/// [`StoreConfig::from_env`], or deserialized from a config file (every field
/// optional, unknown fields rejected), and combined with
/// [`StoreConfig::overridden_by`] so that explicit settings win over the
/// environment. `Debug` never shows the secret key or session token.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Custom S3 endpoint, e.g. `http://127.0.0.1:9000` for MinIO. When set,
    /// requests use path-style addressing (`endpoint/bucket/key`).
    pub endpoint: Option<String>,
    /// AWS region; `us-east-1` when unset (what MinIO expects by default).
    pub region: Option<String>,
    /// Access key id.
    pub access_key_id: Option<String>,
    /// Secret access key.
    pub secret_access_key: Option<Secret>,
    /// Session token for temporary credentials.
    pub session_token: Option<Secret>,
    /// Permit plain-HTTP endpoints (MinIO on a private network).
    pub allow_http: Option<bool>,
    /// Longest one request may take, such as `30s` (config key
    /// `request_timeout`, variable `QUARRY_STORE_TIMEOUT`); default
    /// [`DEFAULT_REQUEST_TIMEOUT`].
    #[serde(deserialize_with = "duration_text")]
    pub request_timeout: Option<Duration>,
}

fn duration_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
    let text = String::deserialize(deserializer)?;
    humantime::parse_duration(&text)
        .map(Some)
        .map_err(|e| serde::de::Error::custom(format!("`{text}` is not a duration: {e}")))
}

impl StoreConfig {
    /// Reads the process environment: `AWS_ENDPOINT_URL` (else
    /// `AWS_ENDPOINT`), `AWS_REGION` (else `AWS_DEFAULT_REGION`),
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN` and
    /// `AWS_ALLOW_HTTP` (`true`/`1`/`yes`), and `QUARRY_STORE_TIMEOUT`
    /// (such as `30s`; an unreadable one is ignored with a warning). Empty
    /// variables count as unset.
    pub fn from_env() -> Self {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// As [`StoreConfig::from_env`], reading variables through `var` (so
    /// that tests need not touch the process environment).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Self {
        let get = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        StoreConfig {
            endpoint: get("AWS_ENDPOINT_URL").or_else(|| get("AWS_ENDPOINT")),
            region: get("AWS_REGION").or_else(|| get("AWS_DEFAULT_REGION")),
            access_key_id: get("AWS_ACCESS_KEY_ID"),
            secret_access_key: get("AWS_SECRET_ACCESS_KEY").map(Secret),
            session_token: get("AWS_SESSION_TOKEN").map(Secret),
            allow_http: get("AWS_ALLOW_HTTP").map(|v| {
                matches!(
                    v.trim().to_ascii_lowercase().as_str(),
                    "true" | "1" | "yes" | "on"
                )
            }),
            request_timeout: get("QUARRY_STORE_TIMEOUT").and_then(|text| {
                humantime::parse_duration(text.trim())
                    .inspect_err(|e| tracing::warn!("ignoring QUARRY_STORE_TIMEOUT=`{text}`: {e}"))
                    .ok()
            }),
        }
    }

    /// `self` with every field that `explicit` sets replaced by it; used as
    /// `StoreConfig::from_env().overridden_by(file_config)`.
    pub fn overridden_by(self, explicit: StoreConfig) -> StoreConfig {
        StoreConfig {
            endpoint: explicit.endpoint.or(self.endpoint),
            region: explicit.region.or(self.region),
            access_key_id: explicit.access_key_id.or(self.access_key_id),
            secret_access_key: explicit.secret_access_key.or(self.secret_access_key),
            session_token: explicit.session_token.or(self.session_token),
            allow_http: explicit.allow_http.or(self.allow_http),
            request_timeout: explicit.request_timeout.or(self.request_timeout),
        }
    }

    /// Why these settings cannot reach their endpoint, in one line, when
    /// that is known before any request: a plain-HTTP endpoint without
    /// `AWS_ALLOW_HTTP`.
    pub(crate) fn endpoint_problem(&self) -> Option<String> {
        let endpoint = self.endpoint.as_deref()?;
        (endpoint.starts_with("http://") && !self.allow_http.unwrap_or(false)).then(|| {
            format!(
                "the S3 endpoint {endpoint} is plain HTTP, which is refused unless \
                 AWS_ALLOW_HTTP=true (or `allow_http = true` under [store])"
            )
        })
    }

    /// An S3 client builder for `bucket` with these settings applied.
    pub(crate) fn s3_builder(&self, bucket: &str) -> object_store::aws::AmazonS3Builder {
        let client = object_store::ClientOptions::new()
            .with_timeout(self.request_timeout.unwrap_or(DEFAULT_REQUEST_TIMEOUT))
            .with_connect_timeout(CONNECT_TIMEOUT);
        let retry = object_store::RetryConfig {
            max_retries: REQUEST_RETRIES,
            retry_timeout: RETRY_DEADLINE,
            ..object_store::RetryConfig::default()
        };
        let mut builder = object_store::aws::AmazonS3Builder::new()
            .with_client_options(client)
            .with_retry(retry)
            .with_bucket_name(bucket)
            .with_region(self.region.as_deref().unwrap_or("us-east-1"))
            // Custom endpoints (MinIO and friends) want path-style requests;
            // AWS itself prefers virtual-hosted ones.
            .with_virtual_hosted_style_request(self.endpoint.is_none())
            .with_allow_http(self.allow_http.unwrap_or(false));
        if let Some(endpoint) = &self.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if let Some(key_id) = &self.access_key_id {
            builder = builder.with_access_key_id(key_id);
        }
        if let Some(secret) = &self.secret_access_key {
            builder = builder.with_secret_access_key(secret.expose());
        }
        if let Some(token) = &self.session_token {
            builder = builder.with_token(token.expose());
        }
        builder
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn env_vars_fill_every_field_with_preferred_names_first() {
        let config = StoreConfig::from_vars(vars(&[
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:9000"),
            ("AWS_ENDPOINT", "http://ignored:1"),
            ("AWS_REGION", "eu-west-1"),
            ("AWS_DEFAULT_REGION", "ignored"),
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI"),
            ("AWS_SESSION_TOKEN", "tok"),
            ("AWS_ALLOW_HTTP", "true"),
        ]));
        assert_eq!(config.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(config.region.as_deref(), Some("eu-west-1"));
        assert_eq!(config.access_key_id.as_deref(), Some("AKIDEXAMPLE"));
        assert_eq!(config.secret_access_key.unwrap().expose(), "wJalrXUtnFEMI");
        assert_eq!(config.session_token.unwrap().expose(), "tok");
        assert_eq!(config.allow_http, Some(true));
    }

    #[test]
    fn fallback_env_names_and_empty_values() {
        let config = StoreConfig::from_vars(vars(&[
            ("AWS_ENDPOINT", "http://minio:9000"),
            ("AWS_DEFAULT_REGION", "us-west-2"),
            ("AWS_ACCESS_KEY_ID", ""),
            ("AWS_ALLOW_HTTP", "0"),
        ]));
        assert_eq!(config.endpoint.as_deref(), Some("http://minio:9000"));
        assert_eq!(config.region.as_deref(), Some("us-west-2"));
        assert_eq!(config.access_key_id, None);
        assert_eq!(config.allow_http, Some(false));
    }

    #[test]
    fn explicit_settings_override_the_environment_field_by_field() {
        let env = StoreConfig::from_vars(vars(&[
            ("AWS_ENDPOINT_URL", "http://env:9000"),
            ("AWS_REGION", "env-region"),
            ("AWS_SECRET_ACCESS_KEY", "env-secret"),
        ]));
        let explicit: StoreConfig =
            serde_json::from_str(r#"{"endpoint": "http://file:9000", "allow_http": true}"#)
                .unwrap();
        let merged = env.overridden_by(explicit);
        assert_eq!(merged.endpoint.as_deref(), Some("http://file:9000"));
        assert_eq!(merged.region.as_deref(), Some("env-region"));
        assert_eq!(merged.secret_access_key.unwrap().expose(), "env-secret");
        assert_eq!(merged.allow_http, Some(true));
    }

    #[test]
    fn unknown_config_keys_are_rejected() {
        let err = serde_json::from_str::<StoreConfig>(r#"{"endpiont": "x"}"#).unwrap_err();
        assert!(err.to_string().contains("endpiont"), "{err}");
    }

    #[test]
    fn debug_output_never_shows_secrets() {
        let config = StoreConfig {
            access_key_id: Some("AKIDEXAMPLE".into()),
            secret_access_key: Some(Secret::new("very-secret-key")),
            session_token: Some(Secret::new("very-secret-token")),
            ..StoreConfig::default()
        };
        let shown = format!("{config:?} {config:#?}");
        assert!(!shown.contains("very-secret-key"), "{shown}");
        assert!(!shown.contains("very-secret-token"), "{shown}");
        assert!(shown.contains("AKIDEXAMPLE"));
    }

    #[test]
    fn the_request_timeout_comes_from_the_environment_or_the_file() {
        let config = StoreConfig::from_vars(vars(&[("QUARRY_STORE_TIMEOUT", "1m 30s")]));
        assert_eq!(config.request_timeout, Some(Duration::from_secs(90)));
        let unreadable = StoreConfig::from_vars(vars(&[("QUARRY_STORE_TIMEOUT", "soon")]));
        assert_eq!(unreadable.request_timeout, None);
        let file: StoreConfig = serde_json::from_str(r#"{"request_timeout": "10s"}"#).unwrap();
        assert_eq!(file.request_timeout, Some(Duration::from_secs(10)));
        let err = serde_json::from_str::<StoreConfig>(r#"{"request_timeout": "10 parsecs"}"#)
            .unwrap_err();
        assert!(err.to_string().contains("10 parsecs"), "{err}");
        assert_eq!(
            config.overridden_by(file).request_timeout,
            Some(Duration::from_secs(10))
        );
    }

    #[test]
    fn a_plain_http_endpoint_without_allow_http_is_named_in_one_line() {
        let config = StoreConfig {
            endpoint: Some("http://127.0.0.1:9000".into()),
            ..StoreConfig::default()
        };
        let problem = config.endpoint_problem().expect("a problem");
        assert!(problem.contains("AWS_ALLOW_HTTP=true"), "{problem}");
        assert!(!problem.contains('\n'));
        let allowed = StoreConfig {
            allow_http: Some(true),
            ..config
        };
        assert_eq!(allowed.endpoint_problem(), None);
    }

    #[tokio::test]
    async fn an_endpoint_that_never_answers_fails_within_the_request_timeout() {
        // Accepts connections and never says a word.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let _silent = std::thread::spawn(move || {
            let held: Vec<_> = listener.incoming().take(16).collect();
            std::thread::sleep(Duration::from_secs(120));
            drop(held);
        });
        let config = StoreConfig {
            endpoint: Some(format!("http://127.0.0.1:{port}")),
            allow_http: Some(true),
            access_key_id: Some("quarry".into()),
            secret_access_key: Some(Secret::new("quarry-secret")),
            request_timeout: Some(Duration::from_millis(500)),
            ..StoreConfig::default()
        };
        let resolver = crate::StoreResolver::new(config);
        let location = resolver.resolve("s3://silent/key").unwrap();
        // A bound on the test, not a timing claim: without the request
        // timeout this would wait for minutes.
        let outcome = tokio::time::timeout(
            Duration::from_secs(60),
            object_store::ObjectStoreExt::head(&*location.store, &location.path),
        )
        .await
        .expect("the request ended");
        let err = outcome.unwrap_err().to_string();
        assert!(
            err.contains("timed out") || err.contains("timeout"),
            "{err}"
        );
    }
}
