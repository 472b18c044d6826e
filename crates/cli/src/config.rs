//! Settings of `quarry scheduler`, `quarry worker` and the client commands,
//! from four sources, each winning over the next:
//!
//! 1. command-line flags (`--cache-dir`),
//! 2. environment variables (`QUARRY_CACHE_DIR`),
//! 3. a TOML config file (`cache_dir = ...`): the one named by `--config`
//!    or `QUARRY_<KIND>_CONFIG`, else `$XDG_CONFIG_HOME/quarry/<KIND>.toml`
//!    (`~/.config/quarry/<KIND>.toml`) when it exists,
//! 4. built-in defaults, which each command applies to what is left unset.
//!
//! figment merges the first three. Each command has one struct, its clap
//! `Args`, whose fields are its settings: a field is at once a flag, an
//! environment variable and a config key, so adding one adds all three.
//! `configs/` in the repository has a commented example file of each kind.

use anyhow::{anyhow, Result};
use figment::value::{Dict, Map, Num, Value};
use figment::{Figment, Metadata, Profile, Provider};
use serde::de::{self, DeserializeOwned, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

/// Parses sizes like `10GiB`, `512MB` or `1048576`: the same rule job
/// files use.
pub use quarry_job::parse_size;

/// The help text's note on where settings come from.
pub const SOURCES_HELP: &str = "Every option is also the environment variable QUARRY_<OPTION> \
(--cache-dir: QUARRY_CACHE_DIR) and a key of the config file (cache_dir). A flag wins over \
the variable, which wins over the file. See docs/operations.md.";

/// The client commands' note: only their connection options are settings.
pub const CLIENT_SOURCES_HELP: &str = "The options --scheduler, --server-key, --key-file and \
--connect-timeout are also the environment variables QUARRY_SCHEDULER, QUARRY_SERVER_KEY, \
QUARRY_KEY_FILE and QUARRY_CONNECT_TIMEOUT, and keys of the client config file (scheduler, \
...). A flag wins over the variable, which wins over the file. See docs/operations.md.";

/// What every command's settings struct provides.
pub trait Settings: clap::Args + Serialize + DeserializeOwned {
    /// The kind of config file: `worker` reads `worker.toml`, named by
    /// `QUARRY_WORKER_CONFIG`.
    const KIND: &'static str;

    /// The config file named on the command line (or by its variable).
    fn config_file(&self) -> Option<&Path>;
}

/// Reads one environment variable.
pub type VarReader = Box<dyn Fn(&str) -> Option<OsString>>;

/// Where the sources are. [`Sources::process`] in the program; tests make
/// their own, so that they need not touch the process environment.
pub struct Sources {
    /// Reads an environment variable.
    pub var: VarReader,
    /// Where default config files are looked for (`~/.config/quarry`).
    pub config_dir: Option<PathBuf>,
}

impl Sources {
    /// This process's environment and home directory.
    pub fn process() -> Sources {
        let config_dir = std::env::var_os("XDG_CONFIG_HOME")
            .filter(|dir| !dir.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")))
            .map(|dir| dir.join("quarry"));
        Sources {
            var: Box::new(|name| std::env::var_os(name)),
            config_dir,
        }
    }
}

/// The settings of one command: `flags` merged over the environment, the
/// config file and nothing else (defaults are the command's to apply).
pub fn resolve<T: Settings>(flags: &T) -> Result<T> {
    resolve_from(flags, &Sources::process())
}

/// [`resolve`] with explicit sources.
pub fn resolve_from<T: Settings>(flags: &T, sources: &Sources) -> Result<T> {
    let file = match flags.config_file() {
        Some(path) => Some(path.to_path_buf()),
        None => sources
            .config_dir
            .as_ref()
            .map(|dir| dir.join(format!("{}.toml", T::KIND)))
            .filter(|path| path.is_file()),
    };
    let mut figment = Figment::new();
    if let Some(path) = &file {
        tracing::debug!(file = %path.display(), "reading settings");
        figment = figment.merge(TomlFile(path.clone()));
    }
    let figment = figment
        .merge(Layer {
            source: "environment variable",
            values: environment::<T>(sources)?,
            name_of: variable,
        })
        .merge(Layer {
            source: "command-line flag",
            values: given(flags)?,
            name_of: |key| format!("--{}", key.replace('_', "-")),
        });
    figment.extract_lossy().map_err(|errors| {
        let all: Vec<String> = errors.into_iter().map(|e| e.to_string()).collect();
        anyhow!("invalid settings: {}", all.join("; "))
    })
}

/// The setting names of `T`: its argument ids, `config` aside.
pub fn keys<T: clap::Args>() -> Vec<String> {
    T::augment_args(clap::Command::new("settings"))
        .get_arguments()
        .map(|arg| arg.get_id().as_str().to_owned())
        .filter(|id| id != "config")
        .collect()
}

/// The environment variable of a setting: `QUARRY_CACHE_DIR` for
/// `cache_dir`.
pub fn variable(key: &str) -> String {
    format!("QUARRY_{}", key.to_ascii_uppercase())
}

/// The settings that `flags` sets, as figment values: unset options
/// (serialized as empty values) are left out so they do not hide the other
/// sources.
fn given<T: Serialize>(flags: &T) -> Result<Dict> {
    let value = Value::serialize(flags).map_err(|e| anyhow!("cannot read the flags: {e}"))?;
    let mut dict = value.into_dict().unwrap_or_default();
    dict.retain(|_, value| !matches!(value, Value::Empty(..)));
    Ok(dict)
}

/// The command line that gives `settings` to a `quarry` subcommand
/// exactly: positional values in order, then `--key=value` for every other
/// setting that is set. Every setting is a flag, so nothing is lost.
pub fn to_args<T: Settings>(settings: &T) -> Result<Vec<OsString>> {
    let values = given(settings)?;
    let command = T::augment_args(clap::Command::new("settings"));
    let mut positional = Vec::new();
    let mut flags = Vec::new();
    for arg in command.get_arguments() {
        let Some(value) = values.get(arg.get_id().as_str()) else {
            continue;
        };
        let text = value_text(value)
            .ok_or_else(|| anyhow!("setting `{}` cannot be passed on", arg.get_id()))?;
        match arg.get_long() {
            Some(long) => flags.push(OsString::from(format!("--{long}={text}"))),
            None => positional.push(OsString::from(text)),
        }
    }
    positional.extend(flags);
    Ok(positional)
}

fn value_text(value: &Value) -> Option<String> {
    match value {
        Value::String(_, text) => Some(text.clone()),
        Value::Bool(_, flag) => Some(flag.to_string()),
        Value::Num(_, number) => Some(num_text(*number)),
        Value::Char(_, c) => Some(c.to_string()),
        Value::Empty(..) | Value::Dict(..) | Value::Array(..) => None,
    }
}

fn num_text(number: Num) -> String {
    if let Some(n) = number.to_u128() {
        n.to_string()
    } else if let Some(n) = number.to_i128() {
        n.to_string()
    } else {
        number.to_f64().map_or_else(String::new, |n| n.to_string())
    }
}

/// A TOML config file, parsed with the workspace's `toml`.
struct TomlFile(PathBuf);

impl Provider for TomlFile {
    fn metadata(&self) -> Metadata {
        Metadata::from("config file", self.0.as_path()).interpolater(|_, keys| keys.join("."))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let path = self.0.display();
        let text = std::fs::read_to_string(&self.0)
            .map_err(|e| figment::Error::from(format!("cannot read config file {path}: {e}")))?;
        let table: toml::Table =
            toml::from_str(&text).map_err(|e| figment::Error::from(one_line(&e.to_string())))?;
        let dict = Value::serialize(table)?
            .into_dict()
            .ok_or_else(|| figment::Error::from(format!("config file {path} is not a table")))?;
        Ok(Profile::Default.collect(dict))
    }
}

/// A TOML parse error on one line: its position (the first line) and its
/// message (the last), without the quoted source between them.
fn one_line(message: &str) -> String {
    let mut lines = message.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next().unwrap_or_default();
    match lines.next_back() {
        Some(last) if last != first => format!("{first}: {last}"),
        _ => first.to_owned(),
    }
}

/// The `QUARRY_<KEY>` variable of each setting, taken as text: the setting's
/// own type reads it (`--cache-size` sizes, durations, numbers), and text
/// such as a Z85 key is never mistaken for an array or a table. Empty
/// variables count as unset.
fn environment<T: clap::Args>(sources: &Sources) -> Result<Dict> {
    let mut dict = Dict::new();
    for key in keys::<T>() {
        let name = variable(&key);
        let Some(value) = (sources.var)(&name).filter(|v| !v.is_empty()) else {
            continue;
        };
        let text = value
            .into_string()
            .map_err(|_| anyhow!("{name} is not valid UTF-8"))?;
        dict.insert(key, Value::from(text));
    }
    Ok(dict)
}

/// Settings from one source other than a file, whose errors name the
/// setting as the user wrote it (`--cache-dir`, `QUARRY_CACHE_DIR`).
struct Layer {
    source: &'static str,
    values: Dict,
    name_of: fn(&str) -> String,
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        let name_of = self.name_of;
        Metadata::named(self.source).interpolater(move |_, keys| name_of(&keys.join("_")))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.values.clone()))
    }
}

/// A size in bytes, written `10GiB`, `512MB` or `1048576`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(text: &str) -> Result<ByteSize, String> {
        parse_size(text).map(ByteSize)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(self.0)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<ByteSize, D::Error> {
        struct SizeVisitor;
        impl Visitor<'_> for SizeVisitor {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size such as `10GiB`, `512MB` or `1048576` (bytes)")
            }
            fn visit_u64<E: de::Error>(self, bytes: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(bytes))
            }
            fn visit_i64<E: de::Error>(self, bytes: i64) -> Result<ByteSize, E> {
                u64::try_from(bytes)
                    .map(ByteSize)
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(bytes), &self))
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<ByteSize, E> {
                text.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_any(SizeVisitor)
    }
}

/// A duration, written `15s`, `1m 30s` or `2h`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span(pub Duration);

impl FromStr for Span {
    type Err = humantime::DurationError;

    fn from_str(text: &str) -> Result<Span, Self::Err> {
        humantime::parse_duration(text).map(Span)
    }
}

impl Serialize for Span {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&humantime::format_duration(self.0))
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Span, D::Error> {
        struct SpanVisitor;
        impl Visitor<'_> for SpanVisitor {
            type Value = Span;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration with a unit, such as `15s`, `500ms` or `1h 30m`")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Span, E> {
                text.parse()
                    .map_err(|e| E::custom(format!("`{text}` is not a duration: {e}")))
            }
        }
        deserializer.deserialize_str(SpanVisitor)
    }
}

/// Helpers for the commands' tests of their example config files.
#[cfg(test)]
pub mod testing {
    use super::*;

    /// Sources with nothing in them: no variables, no default file.
    pub fn nothing() -> Sources {
        Sources {
            var: Box::new(|_| None),
            config_dir: None,
        }
    }

    /// Whether a comment's text is a setting: `key = value`.
    fn is_setting(text: &str) -> bool {
        text.split_once(" = ").is_some_and(|(key, _)| {
            !key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c == '_')
        })
    }

    /// Resolves `T` from an example config file (one of `configs/`) with
    /// its commented-out settings (`# key = value` lines) switched on, so
    /// that every key the example shows must be one the command reads.
    pub fn example_with_every_setting_on<T: Settings + Default>(
        example: &str,
        with_file: impl FnOnce(&mut T, PathBuf),
    ) -> T {
        let all_on: String = example
            .lines()
            .map(|line| match line.strip_prefix("# ") {
                Some(setting) if is_setting(setting) => setting,
                _ => line,
            })
            .collect::<Vec<_>>()
            .join("\n");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(format!("{}.toml", T::KIND));
        std::fs::write(&path, all_on).unwrap();
        let mut flags = T::default();
        with_file(&mut flags, path);
        resolve_from(&flags, &nothing()).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A command's settings, shaped like the real ones.
    #[derive(clap::Parser, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Example {
        /// Positional.
        scheduler: Option<String>,
        #[arg(long)]
        nthreads: Option<u32>,
        #[arg(long)]
        cache_dir: Option<PathBuf>,
        #[arg(long)]
        cache_size: Option<ByteSize>,
        #[arg(long)]
        timeout: Option<Span>,
        #[arg(long, num_args = 0..=1, default_missing_value = "true")]
        insecure: Option<bool>,
        #[arg(long)]
        server_key: Option<String>,
        #[arg(long)]
        #[serde(skip)]
        config: Option<PathBuf>,
    }

    impl Settings for Example {
        const KIND: &'static str = "example";
        fn config_file(&self) -> Option<&Path> {
            self.config.as_deref()
        }
    }

    fn flags(args: &[&str]) -> Example {
        use clap::Parser;
        Example::parse_from(std::iter::once("example").chain(args.iter().copied()))
    }

    /// Sources with `vars` as the environment and `dir` for default files.
    fn sources(vars: &[(&str, &str)], dir: Option<&Path>) -> Sources {
        let vars: HashMap<String, OsString> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        Sources {
            var: Box::new(move |name| vars.get(name).cloned()),
            config_dir: dir.map(Path::to_path_buf),
        }
    }

    fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn nothing_set_leaves_everything_to_the_defaults() {
        let resolved = resolve_from(&flags(&[]), &sources(&[], None)).unwrap();
        assert_eq!(resolved, Example::default());
    }

    #[test]
    fn each_source_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let file = write_file(
            dir.path(),
            "a.toml",
            "nthreads = 3\ncache_size = \"2GiB\"\ntimeout = \"90s\"\ninsecure = true\n",
        );
        let from_file = resolve_from(
            &flags(&["--config", file.to_str().unwrap()]),
            &sources(&[], None),
        )
        .unwrap();
        assert_eq!(from_file.nthreads, Some(3));
        assert_eq!(from_file.cache_size, Some(ByteSize(2 << 30)));
        assert_eq!(from_file.timeout, Some(Span(Duration::from_secs(90))));
        assert_eq!(from_file.insecure, Some(true));

        let from_env = resolve_from(
            &flags(&[]),
            &sources(
                &[
                    ("QUARRY_NTHREADS", "5"),
                    ("QUARRY_CACHE_SIZE", "512MiB"),
                    ("QUARRY_CACHE_DIR", "/data/cache"),
                    ("QUARRY_INSECURE", "true"),
                    ("QUARRY_TIMEOUT", "2m"),
                    ("QUARRY_SCHEDULER", "tcp://10.0.0.5:8786"),
                ],
                None,
            ),
        )
        .unwrap();
        assert_eq!(from_env.nthreads, Some(5));
        assert_eq!(from_env.cache_size, Some(ByteSize(512 << 20)));
        assert_eq!(from_env.cache_dir, Some(PathBuf::from("/data/cache")));
        assert_eq!(from_env.insecure, Some(true));
        assert_eq!(from_env.timeout, Some(Span(Duration::from_secs(120))));
        assert_eq!(from_env.scheduler.as_deref(), Some("tcp://10.0.0.5:8786"));

        let from_flags = resolve_from(
            &flags(&[
                "tcp://h:1",
                "--nthreads",
                "7",
                "--insecure",
                "--timeout",
                "3s",
            ]),
            &sources(&[], None),
        )
        .unwrap();
        assert_eq!(from_flags.scheduler.as_deref(), Some("tcp://h:1"));
        assert_eq!(from_flags.nthreads, Some(7));
        assert_eq!(from_flags.insecure, Some(true));
        assert_eq!(from_flags.timeout, Some(Span(Duration::from_secs(3))));
    }

    #[test]
    fn flags_win_over_the_environment_which_wins_over_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = write_file(
            dir.path(),
            "a.toml",
            "nthreads = 1\ncache_dir = \"/from/file\"\nserver_key = \"file-key\"\ninsecure = true\n",
        );
        let env = sources(
            &[("QUARRY_NTHREADS", "2"), ("QUARRY_CACHE_DIR", "/from/env")],
            None,
        );
        let resolved = resolve_from(
            &flags(&[
                "--config",
                file.to_str().unwrap(),
                "--nthreads",
                "3",
                "--insecure=false",
            ]),
            &env,
        )
        .unwrap();
        assert_eq!(resolved.nthreads, Some(3), "the flag wins");
        assert_eq!(
            resolved.cache_dir,
            Some(PathBuf::from("/from/env")),
            "the environment wins over the file"
        );
        assert_eq!(resolved.server_key.as_deref(), Some("file-key"));
        assert_eq!(
            resolved.insecure,
            Some(false),
            "a flag can switch off what the file switched on"
        );
    }

    #[test]
    fn the_default_config_file_is_read_when_none_is_named() {
        let dir = tempfile::tempdir().unwrap();
        write_file(dir.path(), "example.toml", "nthreads = 4\n");
        let resolved = resolve_from(&flags(&[]), &sources(&[], Some(dir.path()))).unwrap();
        assert_eq!(resolved.nthreads, Some(4));
        let elsewhere = tempfile::tempdir().unwrap();
        let none = resolve_from(&flags(&[]), &sources(&[], Some(elsewhere.path()))).unwrap();
        assert_eq!(none.nthreads, None, "a missing default file is no error");
    }

    #[test]
    fn text_that_looks_like_data_stays_text() {
        // Z85 keys may hold `[`, `{`, `=` and digits only.
        let resolved = resolve_from(
            &flags(&[]),
            &sources(
                &[("QUARRY_SERVER_KEY", "[a=1]{b}"), ("QUARRY_NTHREADS", "")],
                None,
            ),
        )
        .unwrap();
        assert_eq!(resolved.server_key.as_deref(), Some("[a=1]{b}"));
        assert_eq!(resolved.nthreads, None, "an empty variable is unset");
        let digits = resolve_from(
            &flags(&[]),
            &sources(&[("QUARRY_SERVER_KEY", "12345")], None),
        )
        .unwrap();
        assert_eq!(digits.server_key.as_deref(), Some("12345"));
    }

    #[test]
    fn errors_name_the_setting_and_where_it_came_from() {
        let dir = tempfile::tempdir().unwrap();
        let typo = write_file(dir.path(), "typo.toml", "cache_dri = \"/x\"\n");
        let error = resolve_from(
            &flags(&["--config", typo.to_str().unwrap()]),
            &sources(&[], None),
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("cache_dri"), "{error}");
        assert!(error.contains("typo.toml"), "{error}");

        let broken = write_file(dir.path(), "broken.toml", "nthreads = 1\ncache_size = \n");
        let error = resolve_from(
            &flags(&["--config", broken.to_str().unwrap()]),
            &sources(&[], None),
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("broken.toml"), "{error}");
        assert!(error.contains("line 2"), "{error}");

        let error = resolve_from(&flags(&[]), &sources(&[("QUARRY_NTHREADS", "many")], None))
            .unwrap_err()
            .to_string();
        assert!(error.contains("QUARRY_NTHREADS"), "{error}");

        let error = resolve_from(&flags(&[]), &sources(&[("QUARRY_TIMEOUT", "15")], None))
            .unwrap_err()
            .to_string();
        assert!(error.contains("QUARRY_TIMEOUT"), "{error}");
        assert!(error.contains("not a duration"), "{error}");

        let missing = dir.path().join("missing.toml");
        let error = resolve_from(
            &flags(&["--config", missing.to_str().unwrap()]),
            &sources(&[], None),
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("cannot read config file"), "{error}");
    }

    #[test]
    fn settings_pass_on_as_arguments_that_parse_back_the_same() {
        let settings = Example {
            scheduler: Some("tcp://h:1".into()),
            nthreads: Some(2),
            cache_dir: Some("/c d".into()),
            cache_size: Some(ByteSize(10 << 30)),
            timeout: Some(Span(Duration::from_millis(1500))),
            insecure: Some(false),
            server_key: None,
            config: None,
        };
        let args = to_args(&settings).unwrap();
        assert_eq!(args[0], "tcp://h:1", "positional first");
        use clap::Parser;
        let parsed = Example::parse_from(std::iter::once(OsString::from("example")).chain(args));
        assert_eq!(parsed, settings);
    }

    #[test]
    fn every_setting_has_its_variable() {
        assert_eq!(variable("cache_dir"), "QUARRY_CACHE_DIR");
        assert_eq!(
            keys::<Example>(),
            [
                "scheduler",
                "nthreads",
                "cache_dir",
                "cache_size",
                "timeout",
                "insecure",
                "server_key"
            ]
        );
    }
}
