//! The deployment files (issue #14 items 3 and 4), checked as far as this
//! machine allows: no Docker engine and no Kubernetes cluster run here.
//!
//! `docker-compose.yml`:
//! - Debian's `docker-compose config` accepts it, every image is pinned,
//!   the scheduler binds its dashboard to all interfaces inside its
//!   container (published on the host's loopback) and keeps its journal on a
//!   volume, two workers cache on volumes of their own, and the Dockerfile
//!   needs no BuildKit;
//! - its quarry services' commands, run as local processes with the
//!   compose network's names and volumes mapped to loopback and temporary
//!   directories, against a real MinIO seeded the way its `seed` service
//!   seeds it, run the example job over `s3://`; an independent S3 client
//!   finds the job's manifest and `_SUCCESS`, and the dashboard answers.
//!   Not checked: the images themselves (building, pulling), container
//!   networking and the `mc` seed script.
//!
//! `deploy/helm/quarry`:
//! - `helm template` renders it with its default values and with the two
//!   files in `ci/`; kubeconform validates every object, strictly, against
//!   schemas made from Kubernetes 1.37.2's OpenAPI document and the
//!   ServiceMonitor CRD (see `quarry_integration::k8s_schemas`), and refuses
//!   a deliberately broken object with the same schemas;
//! - every container's arguments are accepted by the `quarry` binary's own
//!   parser. Not checked: admission by a real API server, scheduling, pods
//!   running.
//!
//! Install the tools first: `scripts/deploy-tools.sh`; build the binary:
//! `cargo build -p quarry-cli`; MinIO: `scripts/minio.sh`.

use quarry_integration::k8s_schemas::{write_schemas, ResourceType};
use quarry_integration::{quarry_bin, tool, tool_file, CapturedProcess, MinioServer};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// The Kubernetes release whose schemas the chart is validated against.
const KUBERNETES_VERSION: &str = "1.37.2";
/// The Prometheus Operator release whose ServiceMonitor CRD is used.
const PROMETHEUS_OPERATOR_VERSION: &str = "v0.85.0";
/// A bound on waits (processes starting, the job running), so a broken
/// build fails instead of hanging. Not a timing assertion.
const PATIENCE: Duration = Duration::from_secs(120);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn run(command: &mut Command, what: &str) -> Output {
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed ({})\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    );
    output
}

/// `docker-compose config`: the file with anchors merged and variables
/// filled in, as Compose itself reads it.
fn compose_config() -> Value {
    let compose = tool("docker-compose").unwrap_or_else(|e| panic!("{e}"));
    let output = run(
        Command::new(compose)
            .args([
                "--project-directory",
                ".",
                "-f",
                "docker-compose.yml",
                "config",
            ])
            .current_dir(repo())
            .env_remove("QUARRY_S3_ACCESS_KEY")
            .env_remove("QUARRY_S3_SECRET_KEY")
            .env_remove("RUST_LOG"),
        "docker-compose config",
    );
    serde_saphyr::from_str(&text(&output.stdout)).expect("docker-compose config prints YAML")
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|v| v.as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The services that run the quarry image.
fn quarry_services(config: &Value) -> BTreeMap<String, Value> {
    config["services"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, service)| {
            service["image"]
                .as_str()
                .is_some_and(|i| i.starts_with("quarry:"))
        })
        .map(|(name, service)| (name.clone(), service.clone()))
        .collect()
}

#[test]
fn the_compose_file_is_valid_pinned_and_wired_for_a_job_over_s3() {
    let config = compose_config();
    for (name, service) in config["services"].as_object().unwrap() {
        let image = service["image"].as_str().unwrap_or_default();
        let (_, tag) = image
            .rsplit_once(':')
            .unwrap_or_else(|| panic!("{name}: image `{image}` has no tag"));
        assert!(
            !tag.is_empty() && tag != "latest" && tag.chars().any(|c| c.is_ascii_digit()),
            "{name}: image `{image}` is not pinned to a version"
        );
    }
    let services = quarry_services(&config);
    let scheduler = strings(&services["scheduler"]["command"]);
    assert_eq!(scheduler[0], "scheduler");
    assert!(scheduler.contains(&"--listen=tcp://0.0.0.0:8786".to_owned()));
    assert!(
        scheduler.contains(&"--dashboard=0.0.0.0:8787".to_owned()),
        "the dashboard must listen on all interfaces inside the container: {scheduler:?}"
    );
    let ports = strings(&services["scheduler"]["ports"]);
    assert!(
        ports.iter().any(|p| p.starts_with("127.0.0.1:8787:8787")),
        "{ports:?}"
    );
    let journal = scheduler
        .iter()
        .find_map(|arg| arg.strip_prefix("--journal="))
        .expect("the scheduler keeps a journal");
    let mounts = strings(&services["scheduler"]["volumes"]);
    assert!(
        mounts.iter().any(|mount| {
            let target = mount.split(':').nth(1).unwrap_or_default();
            !target.is_empty() && journal.starts_with(target)
        }),
        "the journal {journal} is not on a volume: {mounts:?}"
    );

    let workers: Vec<&String> = services
        .keys()
        .filter(|n| n.starts_with("worker"))
        .collect();
    assert_eq!(workers.len(), 2, "two workers: {workers:?}");
    let caches: Vec<String> = workers
        .iter()
        .map(|w| strings(&services[*w]["volumes"])[0].clone())
        .collect();
    assert_ne!(caches[0], caches[1], "each worker caches on its own volume");

    let runner = strings(&services["wordcount"]["command"]);
    assert_eq!(runner[0], "submit");
    let job = local_path(&services["wordcount"], &runner[1]);
    let spec: Value = serde_saphyr::from_str(&std::fs::read_to_string(&job).unwrap()).unwrap();
    assert!(
        spec["input"]["prefix"]
            .as_str()
            .is_some_and(|p| p.starts_with("s3://"))
            && spec["output"]
                .as_str()
                .is_some_and(|o| o.starts_with("s3://")),
        "the example job reads and writes s3://: {spec}"
    );

    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    assert!(
        !dockerfile.contains("--mount=") && !dockerfile.contains("# syntax="),
        "the Dockerfile must build without BuildKit"
    );
}

/// Where a container path of `service` is on this machine, through its
/// bind mounts (`./examples:/examples:ro`).
fn local_path(service: &Value, container_path: &str) -> PathBuf {
    for mount in strings(&service["volumes"]) {
        let mut parts = mount.split(':');
        let (Some(source), Some(target)) = (parts.next(), parts.next()) else {
            continue;
        };
        if let Some(rest) = container_path.strip_prefix(target) {
            return PathBuf::from(format!("{source}{rest}"));
        }
    }
    panic!("{container_path} is on no bind mount of the service");
}

/// A compose service's command as a local process: the compose network's
/// `host:port` addresses become the endpoints `names` gives, every volume target becomes a directory
/// under `volumes`, bind mounts their source, and listening addresses
/// loopback ones on free ports.
fn localize(service: &Value, names: &BTreeMap<&str, String>, volumes: &Path) -> Vec<String> {
    let mut mounts: Vec<(String, String)> = Vec::new();
    for mount in strings(&service["volumes"]) {
        let mut parts = mount.split(':');
        let (Some(source), Some(target)) = (parts.next(), parts.next()) else {
            continue;
        };
        let local = if source.starts_with('/') {
            source.to_owned()
        } else {
            volumes.join(source).display().to_string()
        };
        mounts.push((target.to_owned(), local));
    }
    strings(&service["command"])
        .into_iter()
        .map(|mut arg| {
            for (target, local) in &mounts {
                arg = arg.replace(target.as_str(), local);
            }
            for (host, endpoint) in names {
                arg = arg.replace(&format!("tcp://{host}"), endpoint);
            }
            arg.replace("tcp://0.0.0.0:8786", "tcp://127.0.0.1:0")
                .replace("0.0.0.0:8787", "127.0.0.1:0")
        })
        .collect()
}

/// Runs a localized service with its compose environment, S3 pointed at
/// the test's MinIO.
fn start_service(
    name: &str,
    service: &Value,
    args: &[String],
    minio: &MinioServer,
) -> CapturedProcess {
    let mut command = Command::new(quarry_bin());
    command.args(args);
    if let Some(environment) = service["environment"].as_object() {
        for (key, value) in environment {
            command.env(key, value.as_str().unwrap_or_default());
        }
    }
    command.envs(minio.env());
    CapturedProcess::spawn(name, command, PATIENCE).expect("cannot start quarry")
}

/// `GET path` over plain HTTP/1.0; the status line.
fn http_status(address: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response.lines().next().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_compose_commands_run_the_example_job_over_s3() {
    let config = compose_config();
    let services = quarry_services(&config);
    let minio = MinioServer::start().unwrap_or_else(|e| panic!("{e}"));

    // What the `seed` service does: the bucket, and the example data under
    // the prefix its `mc mirror` writes to.
    let seed = &config["services"]["seed"];
    let script = strings(&seed["command"]).join("\n");
    assert!(
        script.contains("mc mb --ignore-existing quarry/quarry")
            && script.contains(
                "mc mirror --overwrite /seed/wordcount/data quarry/quarry/wordcount/data"
            ),
        "the seed script changed; update this test's copy of it:\n{script}"
    );
    let data = local_path(seed, "/seed/wordcount/data");
    minio.create_bucket("quarry").await.unwrap();
    let mut seeded = 0;
    for path in files_under(&data) {
        let key = format!(
            "wordcount/data/{}",
            path.strip_prefix(&data).unwrap().display()
        );
        minio
            .put_object("quarry", &key, std::fs::read(&path).unwrap())
            .await
            .unwrap();
        seeded += 1;
    }

    let volumes = tempfile::tempdir().unwrap();
    for (name, _) in config["volumes"].as_object().unwrap() {
        std::fs::create_dir_all(volumes.path().join(name)).unwrap();
    }
    let mut names = BTreeMap::new();
    let scheduler_args = localize(&services["scheduler"], &names, volumes.path());
    let scheduler = start_service("scheduler", &services["scheduler"], &scheduler_args, &minio);
    let endpoint = scheduler.wait_for_scheduler_endpoint();
    let dashboard = scheduler
        .wait_for_line("dashboard at http://")
        .trim_start_matches("dashboard at http://")
        .trim_end_matches('/')
        .to_owned();
    names.insert("scheduler:8786", endpoint.clone());
    let mut workers = Vec::new();
    for name in ["worker-1", "worker-2"] {
        let args = localize(&services[name], &names, volumes.path());
        workers.push(start_service(name, &services[name], &args, &minio));
    }
    let runner_args = localize(&services["wordcount"], &names, volumes.path());
    let mut runner = start_service("wordcount", &services["wordcount"], &runner_args, &minio);
    let status = runner.wait_exit();
    assert!(
        status.success(),
        "the example job failed:\n{}",
        runner.output()
    );
    assert!(
        runner
            .output()
            // One task per seeded file, plus the reduce that sums them.
            .contains(&format!("succeeded: {} tasks", seeded + 1)),
        "{}",
        runner.output()
    );

    let written = minio.list_keys("quarry", "wordcount/out/").await.unwrap();
    for marker in [
        "wordcount/out/_SUCCESS",
        "wordcount/out/_quarry/manifest.parquet",
    ] {
        assert!(
            written.iter().any(|k| k == marker),
            "{marker} missing: {written:?}"
        );
    }
    let status = http_status(&dashboard, "/");
    assert!(status.contains(" 200 "), "the dashboard answered {status}");
    for worker in &mut workers {
        worker.assert_running();
    }
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(next).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// `helm template` of the chart with `values` (a file under the chart), or
/// its defaults; the objects it renders.
fn render(values: Option<&str>) -> (String, Vec<Value>) {
    let chart = repo().join("deploy/helm/quarry");
    let helm = tool("helm").unwrap_or_else(|e| panic!("{e}"));
    let mut command = Command::new(helm);
    command
        .args(["template", "quarry", "."])
        .current_dir(&chart);
    if let Some(values) = values {
        command.args(["-f", values]);
    }
    let output = run(&mut command, &format!("helm template ({values:?})"));
    let manifest = text(&output.stdout);
    let objects = manifest
        .split("\n---")
        .filter(|doc| doc.lines().any(|l| l.starts_with("kind:")))
        .map(|doc| serde_saphyr::from_str(doc).expect("helm renders YAML"))
        .collect();
    (manifest, objects)
}

/// Strict schemas for `objects`' types, in a directory kubeconform reads.
fn schemas_for(objects: &[Value], dir: &Path) {
    let mut wanted: Vec<ResourceType> = objects
        .iter()
        .map(|o| ResourceType {
            api_version: o["apiVersion"].as_str().unwrap().to_owned(),
            kind: o["kind"].as_str().unwrap().to_owned(),
        })
        .collect();
    wanted.sort();
    wanted.dedup();
    let openapi = tool_file(&format!(
        "k8s/kubernetes-v{KUBERNETES_VERSION}-swagger.json"
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    let crd = tool_file(&format!(
        "k8s/servicemonitors-{PROMETHEUS_OPERATOR_VERSION}.yaml"
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    write_schemas(&openapi, &[crd], &wanted, dir).unwrap();
}

/// kubeconform over `manifest`, strictly, with the schemas in `dir` only.
fn kubeconform(manifest: &str, dir: &Path) -> Output {
    let file = dir.join("manifest.yaml");
    std::fs::write(&file, manifest).unwrap();
    let kubeconform = tool("kubeconform").unwrap_or_else(|e| panic!("{e}"));
    Command::new(kubeconform)
        .args(["-strict", "-summary", "-output", "text"])
        .args(["-kubernetes-version", KUBERNETES_VERSION])
        .arg("-schema-location")
        .arg(format!(
            "{}/{{{{ .ResourceKind }}}}{{{{ .KindSuffix }}}}.json",
            dir.display()
        ))
        .arg(&file)
        .output()
        .expect("cannot run kubeconform")
}

/// Every container's arguments, with the program they run.
fn container_args(objects: &[Value]) -> Vec<(String, Vec<String>)> {
    let mut all = Vec::new();
    for object in objects {
        let containers = &object["spec"]["template"]["spec"]["containers"];
        for container in containers.as_array().into_iter().flatten() {
            all.push((
                format!(
                    "{}/{}",
                    object["metadata"]["name"].as_str().unwrap(),
                    container["name"]
                ),
                strings(&container["args"]),
            ));
        }
    }
    all
}

#[test]
fn the_helm_chart_renders_and_validates_strictly_with_each_set_of_values() {
    for values in [
        None,
        Some("ci/daemonset-values.yaml"),
        Some("ci/insecure-pvc-values.yaml"),
    ] {
        let (manifest, objects) = render(values);
        let schemas = tempfile::tempdir().unwrap();
        schemas_for(&objects, schemas.path());
        let output = kubeconform(&manifest, schemas.path());
        let report = format!("{}{}", text(&output.stdout), text(&output.stderr));
        assert!(
            output.status.success(),
            "kubeconform ({values:?}):\n{report}"
        );
        assert!(
            report.contains(&format!(
                "Valid: {}, Invalid: 0, Errors: 0, Skipped: 0",
                objects.len()
            )),
            "every object validated ({values:?}):\n{report}"
        );

        let kinds: Vec<String> = objects
            .iter()
            .map(|o| {
                format!(
                    "{}/{}",
                    o["kind"].as_str().unwrap(),
                    o["metadata"]["name"].as_str().unwrap()
                )
            })
            .collect();
        for expected in [
            "StatefulSet/quarry-scheduler",
            "Service/quarry-scheduler",
            "Service/quarry-dashboard",
        ] {
            assert!(
                kinds.contains(&expected.to_owned()),
                "{expected} missing: {kinds:?}"
            );
        }
        let args = container_args(&objects);
        assert_eq!(args.len(), 2, "{args:?}");
        for (container, args) in args {
            let parsed = Command::new(quarry_bin())
                .args(&args)
                .arg("--help")
                .stdout(Stdio::null())
                .output()
                .unwrap();
            assert!(
                parsed.status.success(),
                "quarry refuses the arguments of {container} {args:?}: {}",
                text(&parsed.stderr)
            );
        }
    }
}

#[test]
fn the_chart_has_what_each_set_of_values_asks_for() {
    let find = |objects: &[Value], kind: &str, name: &str| -> Value {
        objects
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name}"))
            .clone()
    };
    let (_, defaults) = render(None);
    let scheduler = find(&defaults, "StatefulSet", "quarry-scheduler");
    assert_eq!(
        scheduler["spec"]["volumeClaimTemplates"][0]["metadata"]["name"],
        "journal"
    );
    let args = strings(&scheduler["spec"]["template"]["spec"]["containers"][0]["args"]);
    assert!(
        args.contains(&"--keys=/etc/quarry/keys".to_owned()),
        "{args:?}"
    );
    assert!(
        args.contains(&"--dashboard=0.0.0.0:8787".to_owned()),
        "{args:?}"
    );
    let workers = find(&defaults, "StatefulSet", "quarry-worker");
    let volumes = workers["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap();
    assert!(volumes
        .iter()
        .any(|v| v["name"] == "cache" && v["emptyDir"].is_object()));
    assert!(volumes
        .iter()
        .any(|v| v["secret"]["secretName"] == "quarry-worker-keys"));
    assert!(!defaults.iter().any(|o| o["kind"] == "ServiceMonitor"));

    let (_, daemon) = render(Some("ci/daemonset-values.yaml"));
    let workers = find(&daemon, "DaemonSet", "quarry-worker");
    let pod = &workers["spec"]["template"]["spec"];
    assert_eq!(pod["nodeSelector"]["node-role.example.com/batch"], "true");
    assert_eq!(pod["tolerations"][0]["value"], "batch");
    assert_eq!(
        pod["containers"][0]["resources"]["requests"]["memory"],
        "32Gi"
    );
    assert!(pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|v| v["hostPath"]["path"] == "/mnt/nvme/quarry-cache"));
    let monitor = find(&daemon, "ServiceMonitor", "quarry");
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");
    assert_eq!(monitor["metadata"]["labels"]["release"], "prometheus");

    let (_, open) = render(Some("ci/insecure-pvc-values.yaml"));
    let scheduler = find(&open, "StatefulSet", "quarry-scheduler");
    assert!(
        scheduler["spec"]["volumeClaimTemplates"].is_null(),
        "journal off"
    );
    let args = strings(&scheduler["spec"]["template"]["spec"]["containers"][0]["args"]);
    assert!(args.contains(&"--insecure".to_owned()), "{args:?}");
    let workers = find(&open, "StatefulSet", "quarry-worker");
    assert_eq!(workers["spec"]["replicas"], 16);
    assert_eq!(
        workers["spec"]["volumeClaimTemplates"][0]["spec"]["storageClassName"],
        "local-path"
    );
}

#[test]
fn kubeconform_with_these_schemas_refuses_a_broken_object() {
    let (manifest, objects) = render(None);
    let schemas = tempfile::tempdir().unwrap();
    schemas_for(&objects, schemas.path());
    // A misspelt field and a port that is not a number: what strict
    // validation is for.
    let broken = manifest
        .replacen("serviceName:", "servcieName:", 1)
        .replacen("containerPort: 8786", "containerPort: eighty", 1);
    let output = kubeconform(&broken, schemas.path());
    let report = text(&output.stdout);
    assert!(!output.status.success(), "kubeconform accepted:\n{report}");
    assert!(report.contains("servcieName"), "{report}");
    assert!(report.contains("containerPort"), "{report}");
}

#[test]
fn the_chart_refuses_an_unauthenticated_cluster_unless_told() {
    let helm = tool("helm").unwrap_or_else(|e| panic!("{e}"));
    let output = Command::new(helm)
        .args(["template", "quarry", ".", "--set", "curve.enabled=false"])
        .current_dir(repo().join("deploy/helm/quarry"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains("set insecure=true"),
        "{}",
        text(&output.stderr)
    );
}
