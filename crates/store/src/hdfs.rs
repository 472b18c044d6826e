//! HDFS: `hdfs://` URLs onto `hdfs-native-object-store` (a pure-Rust
//! NameNode and DataNode client: no JVM, no libhdfs), the Hadoop
//! configuration files, and block locations for placement.
//!
//! - `hdfs://namenode:port/path` names one NameNode; `hdfs://nameservice/path`
//!   an HA name service defined in `hdfs-site.xml`; `hdfs:///path` the
//!   cluster of `fs.defaultFS` (and listings under it keep that form, so
//!   every process resolves it through its own configuration). The files are read from `$HADOOP_CONF_DIR`,
//!   else `$HADOOP_HOME/etc/hadoop`, once per process. The user is
//!   `$HADOOP_USER_NAME` (else the login user), as with Hadoop's own client.
//! - Kerberos (`hadoop.security.authentication=kerberos`) is refused with
//!   [`StoreError::KerberosUnsupported`].
//! - Pins: HDFS has no ETag. The object store reports `{mtime:x}-{length:x}`
//!   in its place, and a pinned read checks it when it opens and again once
//!   the body is read, so a file replaced or appended to after listing
//!   fails as [`StoreError::Changed`], never with other bytes.
//!   HDFS's file checksum is not used: it costs a DataNode request per block.
//! - Writes go to a hidden temporary file (`.NAME.tmp.N`) renamed into place
//!   when complete (the object store does this for every put), so a reader
//!   never sees a half-written output, manifest or `_SUCCESS`.
//! - Block locations come from the NameNode's WebHDFS API
//!   (`GETFILEBLOCKLOCATIONS`, at `dfs.namenode.http-address`), fetched while
//!   a listing streams and kept in a bounded table, so that tasks can name
//!   the hosts holding their bytes ([`crate::StoreResolver::replica_hosts`]).
//!   HDFS offers no cheaper way: `hdfs-native` does not expose the
//!   locations its own reads fetch.
//!   Locality is an optimisation: when WebHDFS cannot be reached the
//!   listing goes on without it and says so once in the log.

use crate::error::{Result, StoreError};
use crate::read::describe;
use crate::resolve::StoreLocation;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryFutureExt};
use hdfs_native_object_store::HdfsObjectStoreBuilder;
use object_store::{ObjectStore, ObjectStoreExt};
use quarry_proto::{DataRef, Pin};
use serde::Deserialize;
use std::collections::{HashMap, VecDeque};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::Duration;

/// The NameNode's HTTP port when the configuration names none.
const DEFAULT_HTTP_PORT: u16 = 9870;
/// Block-location requests in flight per listing.
const LOCATION_REQUESTS_IN_FLIGHT: usize = 16;
/// Files whose block locations are kept (oldest forgotten first).
const LOCATION_TABLE_FILES: usize = 100_000;
/// Bound on one WebHDFS request, connection included.
const LOCATION_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Hosts named per task at most (more replicas add nothing to placement).
const MAX_REPLICA_HOSTS: usize = 8;

/// Hadoop settings: `core-site.xml` then `hdfs-site.xml` of one directory.
#[derive(Clone, Debug, Default)]
pub(crate) struct HadoopConfig {
    values: HashMap<String, String>,
    /// Where they were read from, for error messages.
    dir: Option<PathBuf>,
}

static PROCESS_CONFIG: LazyLock<std::result::Result<Arc<HadoopConfig>, String>> =
    LazyLock::new(|| HadoopConfig::from_env().map(Arc::new));

/// A runtime of its own for the HDFS client's background tasks, so that
/// they run whichever runtime (or slot thread) a read is polled from.
static IO_RUNTIME: LazyLock<std::io::Result<tokio::runtime::Runtime>> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("quarry-hdfs")
        .enable_all()
        .build()
});

impl HadoopConfig {
    /// The process's configuration (read once).
    pub(crate) fn process() -> Result<Arc<HadoopConfig>> {
        PROCESS_CONFIG
            .as_ref()
            .map(Arc::clone)
            .map_err(|reason| StoreError::HadoopConfig {
                reason: reason.clone(),
            })
    }

    /// Reads `$HADOOP_CONF_DIR`, else `$HADOOP_HOME/etc/hadoop`; neither
    /// set means an empty configuration.
    fn from_env() -> std::result::Result<HadoopConfig, String> {
        let dir = std::env::var_os("HADOOP_CONF_DIR")
            .filter(|dir| !dir.is_empty())
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("HADOOP_HOME")
                    .filter(|dir| !dir.is_empty())
                    .map(|home| PathBuf::from(home).join("etc/hadoop"))
            });
        match dir {
            Some(dir) => HadoopConfig::from_dir(&dir),
            None => Ok(HadoopConfig::default()),
        }
    }

    /// Reads `dir/core-site.xml` and `dir/hdfs-site.xml` (a missing file is
    /// empty; later files win).
    pub(crate) fn from_dir(dir: &Path) -> std::result::Result<HadoopConfig, String> {
        let mut values = HashMap::new();
        for name in ["core-site.xml", "hdfs-site.xml"] {
            let path = dir.join(name);
            let text = match std::fs::read_to_string(&path) {
                Ok(text) => text,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
            };
            let document = roxmltree::Document::parse(&text)
                .map_err(|e| format!("{} is not valid XML: {e}", path.display()))?;
            for property in document
                .descendants()
                .filter(|node| node.has_tag_name("property"))
            {
                let field = |tag: &str| {
                    property
                        .children()
                        .find(|child| child.has_tag_name(tag))
                        .and_then(|child| child.text())
                        .map(|text| text.trim().to_string())
                };
                if let (Some(key), Some(value)) = (field("name"), field("value")) {
                    values.insert(key, value);
                }
            }
        }
        Ok(HadoopConfig {
            values,
            dir: Some(dir.to_path_buf()),
        })
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// The authority `hdfs:///path` means: that of `fs.defaultFS`.
    pub(crate) fn default_authority(&self, url: &str) -> Result<String> {
        let where_from = match &self.dir {
            Some(dir) => format!("in {}", dir.display()),
            None => "(neither HADOOP_CONF_DIR nor HADOOP_HOME is set)".to_string(),
        };
        let invalid = |reason: String| StoreError::InvalidUrl {
            url: url.to_string(),
            reason,
        };
        let default_fs = self.get("fs.defaultFS").ok_or_else(|| {
            invalid(format!(
                "hdfs:/// needs fs.defaultFS, and no core-site.xml sets it {where_from}"
            ))
        })?;
        match default_fs.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("hdfs") => {
                let authority = rest.split('/').next().unwrap_or_default();
                if authority.is_empty() {
                    return Err(invalid(format!(
                        "fs.defaultFS ({default_fs}) names no NameNode"
                    )));
                }
                Ok(authority.to_string())
            }
            _ => Err(invalid(format!(
                "fs.defaultFS is {default_fs} {where_from}, not an hdfs:// URL"
            ))),
        }
    }

    fn kerberos(&self) -> bool {
        self.get("hadoop.security.authentication")
            .is_some_and(|auth| auth.eq_ignore_ascii_case("kerberos"))
    }

    /// The NameNode web addresses (`host:port`) for `authority`: each HA
    /// NameNode's `dfs.namenode.http-address.NS.NN`, else
    /// `dfs.namenode.http-address`, else the NameNode's host on port 9870.
    /// A wildcard bind address stands for the NameNode's host.
    fn http_addresses(&self, authority: &str) -> Vec<String> {
        let (host, has_port) = match authority.rsplit_once(':') {
            Some((host, _)) => (host, true),
            None => (authority, false),
        };
        let with_host = |address: &str| match address.split_once(':') {
            Some(("0.0.0.0" | "", port)) => format!("{host}:{port}"),
            _ => address.to_string(),
        };
        let ha_namenodes = self
            .get(&format!("dfs.ha.namenodes.{authority}"))
            .filter(|_| !has_port);
        if let Some(namenodes) = ha_namenodes {
            let addresses: Vec<String> = namenodes
                .split(',')
                .filter_map(|nn| {
                    self.get(&format!(
                        "dfs.namenode.http-address.{authority}.{}",
                        nn.trim()
                    ))
                })
                .map(|address| address.to_string())
                .collect();
            if !addresses.is_empty() {
                return addresses;
            }
        }
        match self.get("dfs.namenode.http-address") {
            Some(address) => vec![with_host(address)],
            None => vec![format!("{host}:{DEFAULT_HTTP_PORT}")],
        }
    }
}

/// Builds the store for `root` (`hdfs://authority`, or `hdfs://` for the
/// cluster of `fs.defaultFS`).
pub(crate) fn build_store(root: &str, url: &str) -> Result<Arc<dyn ObjectStore>> {
    let config = HadoopConfig::process()?;
    let root = match root.strip_prefix("hdfs://") {
        Some("") => format!("hdfs://{}", config.default_authority(url)?),
        _ => root.to_string(),
    };
    // The NameNode drops a connection that names no user, which surfaces
    // as a bare "RPC listener disconnected".
    if std::env::var_os("HADOOP_USER_NAME").is_some_and(|user| user.is_empty()) {
        return Err(StoreError::HadoopConfig {
            reason: format!(
                "HADOOP_USER_NAME is set but empty (for {url}); set a user or unset it"
            ),
        });
    }
    if config.kerberos() {
        return Err(StoreError::KerberosUnsupported {
            url: url.to_string(),
        });
    }
    let runtime = IO_RUNTIME.as_ref().map_err(|e| StoreError::HadoopConfig {
        reason: format!("cannot start the HDFS client's runtime: {e}"),
    })?;
    let store = HdfsObjectStoreBuilder::new()
        .with_url(root.as_str())
        .with_io_runtime(runtime.handle().clone())
        .build()
        .map_err(|source| StoreError::Config {
            url: url.to_string(),
            source,
        })?;
    Ok(Arc::new(store))
}

/// Ends `body` with one more look at the file once it has been read: HDFS
/// checks the pin when the read opens, and a file replaced between that
/// check and the block lookup would otherwise be read in its new version.
/// A file changed since fails the read as [`StoreError::Changed`].
pub(crate) fn recheck_pin_at_end(
    body: BoxStream<'static, Result<Bytes>>,
    location: StoreLocation,
    url: &str,
    pin: &Pin,
) -> BoxStream<'static, Result<Bytes>> {
    let Pin::ETag(etag) = pin.clone() else {
        return body;
    };
    let url = url.to_string();
    let check = futures::stream::once(async move {
        match location.store.head(&location.path).await {
            Ok(meta) if meta.e_tag.as_deref() == Some(etag.as_str()) => None,
            Ok(meta) => Some(Err(StoreError::Changed {
                url,
                pinned: describe(&Pin::ETag(etag)),
                current: meta
                    .e_tag
                    .map_or_else(|| "no pin".to_string(), |now| describe(&Pin::ETag(now))),
            })),
            Err(source) => Some(Err(StoreError::from_store(&url, source))),
        }
    })
    .filter_map(futures::future::ready);
    body.chain(check).boxed()
}

/// Says what an HDFS pin (`{mtime:x}-{length:x}`) means, for error
/// messages; `None` if `etag` is not one.
pub(crate) fn describe_pin(etag: &str) -> Option<String> {
    let (mtime, length) = etag.split_once('-')?;
    let mtime = u64::from_str_radix(mtime, 16).ok()?;
    let length = u64::from_str_radix(length, 16).ok()?;
    Some(format!("modification time {mtime} ms, length {length}"))
}

/// One block of a file and the hosts holding its replicas.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub(crate) struct Block {
    offset: u64,
    length: u64,
    hosts: Vec<String>,
}

#[derive(Deserialize)]
struct LocationsReply {
    #[serde(rename = "BlockLocations")]
    locations: BlockList,
}

#[derive(Deserialize)]
struct BlockList {
    #[serde(rename = "BlockLocation", default)]
    blocks: Vec<Block>,
}

/// Adds to `bytes` what each host holds of `range` of a file with `blocks`.
fn count_host_bytes<'a>(bytes: &mut HashMap<&'a str, u64>, blocks: &'a [Block], range: Range<u64>) {
    for block in blocks {
        let start = block.offset.max(range.start);
        let end = (block.offset + block.length).min(range.end);
        // An empty range (an empty file) still prefers its block's hosts.
        let overlap = if range.is_empty() && block.offset == range.start {
            1
        } else {
            end.saturating_sub(start)
        };
        if overlap > 0 {
            for host in &block.hosts {
                *bytes.entry(host.as_str()).or_default() += overlap;
            }
        }
    }
}

/// Hosts by bytes held, most first (ties by name), at most
/// [`MAX_REPLICA_HOSTS`].
fn ranked_hosts(bytes: HashMap<&str, u64>) -> Vec<String> {
    let mut ranked: Vec<(&str, u64)> = bytes.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    ranked
        .into_iter()
        .take(MAX_REPLICA_HOSTS)
        .map(|(host, _)| host.to_string())
        .collect()
}

/// Asks one HDFS cluster's NameNode where files' blocks are.
#[derive(Debug)]
pub(crate) struct BlockLocator {
    http: reqwest::Client,
    /// NameNode web addresses, tried in order (HA: the standby refuses).
    addresses: Vec<String>,
    user: Option<String>,
    /// Set after the first failure: the cluster is listed without locality.
    unavailable: AtomicBool,
}

impl BlockLocator {
    /// A locator for the cluster at `authority` (empty: `fs.defaultFS`'s),
    /// if its configuration can be read and an HTTP client built.
    pub(crate) fn new(authority: &str) -> Option<BlockLocator> {
        let config = HadoopConfig::process().ok()?;
        let authority = match authority {
            "" => config.default_authority("hdfs:///").ok()?,
            named => named.to_string(),
        };
        let http = reqwest::Client::builder()
            .timeout(LOCATION_REQUEST_TIMEOUT)
            .build()
            .ok()?;
        Some(BlockLocator {
            http,
            addresses: config.http_addresses(&authority),
            user: std::env::var("HADOOP_USER_NAME").ok(),
            unavailable: AtomicBool::new(false),
        })
    }

    /// The blocks of the file at `path` (absolute in HDFS), or `None` when
    /// WebHDFS cannot tell (then logged once, and not asked again).
    async fn blocks(&self, path: &str) -> Option<Vec<Block>> {
        if self.unavailable.load(Ordering::Relaxed) {
            return None;
        }
        let mut last_error = String::new();
        for address in &self.addresses {
            match self.ask(address, path).await {
                Ok(blocks) => return Some(blocks),
                Err(error) => last_error = format!("{address}: {error}"),
            }
        }
        if !self.unavailable.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                error = %last_error,
                "HDFS block locations are unavailable (WebHDFS at dfs.namenode.http-address); \
                 tasks are placed without HDFS locality"
            );
        }
        None
    }

    async fn ask(&self, address: &str, path: &str) -> std::result::Result<Vec<Block>, String> {
        let mut url = reqwest::Url::parse(&format!("http://{address}/webhdfs/v1"))
            .map_err(|e| e.to_string())?;
        url.path_segments_mut()
            .map_err(|()| "not a base URL".to_string())?
            .extend(path.split('/').filter(|segment| !segment.is_empty()));
        url.query_pairs_mut()
            .append_pair("op", "GETFILEBLOCKLOCATIONS");
        if let Some(user) = &self.user {
            url.query_pairs_mut().append_pair("user.name", user);
        }
        let reply = self.http.get(url).send().map_err(|e| e.to_string()).await?;
        let status = reply.status();
        let body = reply.bytes().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body);
            return Err(format!(
                "HTTP {status}: {}",
                text.chars().take(200).collect::<String>()
            ));
        }
        let reply: LocationsReply =
            serde_json::from_slice(&body).map_err(|e| format!("unexpected reply: {e}"))?;
        Ok(reply.locations.blocks)
    }
}

/// Block locations of recently listed files, by object key
/// ([`DataRef::object_key`]), bounded in size.
#[derive(Debug, Default)]
pub(crate) struct LocationTable {
    blocks: HashMap<String, Arc<[Block]>>,
    order: VecDeque<String>,
}

impl LocationTable {
    fn insert(&mut self, key: String, blocks: Arc<[Block]>) {
        if self.blocks.insert(key.clone(), blocks).is_none() {
            self.order.push_back(key);
        }
        while self.order.len() > LOCATION_TABLE_FILES {
            if let Some(oldest) = self.order.pop_front() {
                self.blocks.remove(&oldest);
            }
        }
    }

    /// The hosts holding most of what `inputs` read, most first, counting
    /// the files listed recently.
    pub(crate) fn hosts(&self, inputs: &[DataRef]) -> Vec<String> {
        let mut bytes = HashMap::new();
        for input in inputs {
            if let Some(blocks) = self.blocks.get(&input.object_key()) {
                let range = input.range.map_or(0..input.size, |r| r.start..r.end);
                count_host_bytes(&mut bytes, blocks, range);
            }
        }
        ranked_hosts(bytes)
    }
}

/// Shared, lockable [`LocationTable`].
pub(crate) type SharedLocations = Arc<Mutex<LocationTable>>;

/// Passes a listing through, asking `locator` for each listed file's block
/// locations on the way (a few at a time, in order) and keeping them in
/// `table`.
pub(crate) fn record_locations(
    listed: BoxStream<'static, Result<DataRef>>,
    locator: Arc<BlockLocator>,
    table: SharedLocations,
) -> BoxStream<'static, Result<DataRef>> {
    listed
        .map(move |item| {
            let locator = Arc::clone(&locator);
            let table = Arc::clone(&table);
            async move {
                let data_ref = item?;
                if let Some(path) = hdfs_path(&data_ref.url) {
                    if let Some(blocks) = locator.blocks(path).await {
                        table
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .insert(data_ref.object_key(), blocks.into());
                    }
                }
                Ok(data_ref)
            }
        })
        .buffered(LOCATION_REQUESTS_IN_FLIGHT)
        .boxed()
}

/// The absolute path of an `hdfs://authority/path` URL.
fn hdfs_path(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("hdfs://")?;
    rest.find('/').map(|at| &rest[at..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(offset: u64, length: u64, hosts: &[&str]) -> Block {
        Block {
            offset,
            length,
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
        }
    }

    fn hosts_for(blocks: &[Block], range: Range<u64>) -> Vec<String> {
        let mut bytes = HashMap::new();
        count_host_bytes(&mut bytes, blocks, range);
        ranked_hosts(bytes)
    }

    #[test]
    fn hosts_are_ranked_by_the_bytes_of_the_range_they_hold() {
        let blocks = [
            block(0, 100, &["a", "b"]),
            block(100, 100, &["b", "c"]),
            block(200, 50, &["c", "d"]),
        ];
        assert_eq!(hosts_for(&blocks, 0..250), ["b", "c", "a", "d"]);
        assert_eq!(hosts_for(&blocks, 0..100), ["a", "b"]);
        assert_eq!(hosts_for(&blocks, 150..210), ["c", "b", "d"]);
        assert_eq!(hosts_for(&[block(0, 0, &["e"])], 0..0), ["e"]);
        assert!(hosts_for(&blocks, 300..400).is_empty());
    }

    #[test]
    fn webhdfs_replies_parse() {
        let reply = r#"{"BlockLocations":{"BlockLocation":[{"topologyPaths":["/default-rack/127.0.0.1:1"],
            "corrupt":false,"cachedHosts":[],"names":["127.0.0.1:1"],"offset":0,"hosts":["dn-b"],
            "length":3000000,"storageTypes":["DISK"]}]}}"#;
        let parsed: LocationsReply = serde_json::from_str(reply).unwrap();
        assert_eq!(parsed.locations.blocks, [block(0, 3_000_000, &["dn-b"])]);
    }

    #[test]
    fn configuration_files_give_default_fs_kerberos_and_web_addresses() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("core-site.xml"),
            "<?xml version=\"1.0\"?><configuration>\
             <property><name>fs.defaultFS</name><value>hdfs://ns1</value></property>\
             <property><name>hadoop.security.authentication</name><value>Kerberos</value></property>\
             </configuration>",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("hdfs-site.xml"),
            "<configuration>\
             <property><name>dfs.ha.namenodes.ns1</name><value>nn1, nn2</value></property>\
             <property><name>dfs.namenode.http-address.ns1.nn1</name><value>h1:9870</value></property>\
             <property><name>dfs.namenode.http-address.ns1.nn2</name><value>h2:9870</value></property>\
             <property><name>dfs.namenode.http-address</name><value>0.0.0.0:50070</value></property>\
             </configuration>",
        )
        .unwrap();
        let config = HadoopConfig::from_dir(dir.path()).unwrap();
        assert_eq!(config.default_authority("hdfs:///x").unwrap(), "ns1");
        assert!(config.kerberos());
        assert_eq!(config.http_addresses("ns1"), ["h1:9870", "h2:9870"]);
        assert_eq!(config.http_addresses("nn:8020"), ["nn:50070"]);
        assert_eq!(
            HadoopConfig::default().http_addresses("nn:8020"),
            ["nn:9870"]
        );
        let err = HadoopConfig::default()
            .default_authority("hdfs:///x")
            .unwrap_err();
        assert!(err.to_string().contains("fs.defaultFS"), "{err}");

        std::fs::write(dir.path().join("hdfs-site.xml"), "<configuration>").unwrap();
        let err = HadoopConfig::from_dir(dir.path()).unwrap_err();
        assert!(err.contains("hdfs-site.xml is not valid XML"), "{err}");
    }

    #[test]
    fn pins_describe_modification_time_and_length() {
        assert_eq!(
            describe_pin("1a-ff").as_deref(),
            Some("modification time 26 ms, length 255")
        );
        assert_eq!(describe_pin("\"abc\""), None);
    }

    #[test]
    fn the_location_table_forgets_the_oldest_files_first() {
        let mut table = LocationTable::default();
        let data_ref = |n: usize| DataRef {
            url: format!("hdfs://nn:1/f{n}"),
            pin: quarry_proto::Pin::ETag("1-1".into()),
            size: 10,
            range: None,
        };
        for n in 0..LOCATION_TABLE_FILES + 1 {
            table.insert(data_ref(n).object_key(), vec![block(0, 10, &["h"])].into());
        }
        assert!(table.hosts(&[data_ref(0)]).is_empty());
        assert_eq!(table.hosts(&[data_ref(1)]), ["h"]);
        table.insert(
            data_ref(2).object_key(),
            vec![block(0, 10, &["g", "i"])].into(),
        );
        assert_eq!(table.hosts(&[data_ref(1), data_ref(2)]), ["g", "h", "i"]);
        assert_eq!(table.blocks.len(), LOCATION_TABLE_FILES);
    }
}
