//! Kubernetes JSON schemas for `kubeconform`, made offline.
//!
//! kubeconform validates manifests against one JSON schema per resource
//! kind, usually downloaded at run time. The test machines have no network,
//! so the schemas are made here from two documents that
//! `scripts/deploy-tools.sh` takes out of Go modules:
//!
//! - the Kubernetes OpenAPI (swagger 2.0) document,
//!   `api/openapi-spec/swagger.json` of `k8s.io/kubernetes`: each definition
//!   that names a group, version and kind becomes a schema with every
//!   `$ref` inlined ("standalone");
//! - CustomResourceDefinitions (the Prometheus Operator's ServiceMonitor),
//!   whose `openAPIV3Schema` is already standalone.
//!
//! Every object that lists its properties refuses others
//! (`additionalProperties: false`, kubeconform's "strict"), unless it is
//! marked `x-kubernetes-preserve-unknown-fields`. Files are named as
//! kubeconform's `{{ .ResourceKind }}{{ .KindSuffix }}.json` expects:
//! `statefulset-apps-v1.json`, `service-v1.json`,
//! `servicemonitor-monitoring-v1.json`.

use crate::error::{HarnessError, Result};
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};

/// Definitions whose swagger types are looser than their JSON: an
/// `IntOrString` is either, a `Quantity` is a string or a number.
const SPECIAL: [(&str, &str); 2] = [
    ("io.k8s.apimachinery.pkg.util.intstr.IntOrString", "integer"),
    ("io.k8s.apimachinery.pkg.api.resource.Quantity", "number"),
];

/// A resource type: `apps/v1` and `StatefulSet`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ResourceType {
    /// `v1`, `apps/v1`, `monitoring.coreos.com/v1`.
    pub api_version: String,
    /// `Service`, `StatefulSet`.
    pub kind: String,
}

impl ResourceType {
    /// The schema's file name in kubeconform's layout.
    pub fn file_name(&self) -> String {
        let (group, version) = self
            .api_version
            .split_once('/')
            .unwrap_or(("", &self.api_version));
        let kind = self.kind.to_lowercase();
        let group = group.split('.').next().unwrap_or_default().to_lowercase();
        if group.is_empty() {
            format!("{kind}-{}.json", version.to_lowercase())
        } else {
            format!("{kind}-{group}-{}.json", version.to_lowercase())
        }
    }
}

/// Writes a strict standalone schema for each of `wanted` into `out`, from
/// the OpenAPI document `openapi` and the CRD files `crds`. Fails when a
/// wanted type is in none of them.
pub fn write_schemas(
    openapi: &Path,
    crds: &[PathBuf],
    wanted: &[ResourceType],
    out: &Path,
) -> Result<Vec<PathBuf>> {
    let document: Value = read_json(openapi)?;
    let definitions = document
        .get("definitions")
        .and_then(Value::as_object)
        .ok_or_else(|| schema_error(openapi, "no `definitions`"))?;
    let mut custom = Vec::new();
    for crd in crds {
        custom.extend(crd_schemas(crd)?);
    }
    std::fs::create_dir_all(out)
        .map_err(HarnessError::io(format!("creating {}", out.display())))?;
    let mut written = Vec::new();
    for resource in wanted {
        let schema = match find_definition(definitions, resource) {
            Some(name) => inline(&Value::String(name), definitions, &mut Vec::new(), true),
            None => custom
                .iter()
                .find(|(r, _)| r == resource)
                .map(|(_, schema)| schema.clone())
                .ok_or_else(|| {
                    schema_error(
                        openapi,
                        &format!(
                            "{} {} is in neither it nor the CRDs {crds:?}",
                            resource.api_version, resource.kind
                        ),
                    )
                })?,
        };
        let path = out.join(resource.file_name());
        let text = serde_json::to_string(&strict(schema)).expect("a schema serializes");
        std::fs::write(&path, text)
            .map_err(HarnessError::io(format!("writing {}", path.display())))?;
        written.push(path);
    }
    Ok(written)
}

fn schema_error(path: &Path, message: &str) -> HarnessError {
    HarnessError::Schema {
        source_path: path.to_path_buf(),
        message: message.to_owned(),
    }
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path)
        .map_err(HarnessError::io(format!("reading {}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| schema_error(path, &e.to_string()))
}

/// The definition that declares `resource` in `x-kubernetes-group-version-kind`.
fn find_definition(definitions: &Map<String, Value>, resource: &ResourceType) -> Option<String> {
    definitions.iter().find_map(|(name, definition)| {
        let kinds = definition
            .get("x-kubernetes-group-version-kind")?
            .as_array()?;
        kinds
            .iter()
            .any(|gvk| {
                let group = gvk["group"].as_str().unwrap_or_default();
                let version = gvk["version"].as_str().unwrap_or_default();
                let api_version = if group.is_empty() {
                    version.to_owned()
                } else {
                    format!("{group}/{version}")
                };
                gvk["kind"] == resource.kind && api_version == resource.api_version
            })
            .then(|| name.clone())
    })
}

/// `value` with every `$ref` to a definition replaced by the definition
/// itself. A definition that refers back to one being inlined (a cycle)
/// becomes the empty schema, which accepts anything. `is_name` says that
/// `value` is a definition's name rather than a schema.
fn inline(
    value: &Value,
    definitions: &Map<String, Value>,
    stack: &mut Vec<String>,
    is_name: bool,
) -> Value {
    if is_name {
        let name = value.as_str().unwrap_or_default();
        if let Some((_, other)) = SPECIAL.iter().find(|(special, _)| *special == name) {
            return json!({"oneOf": [{"type": "string"}, {"type": other}]});
        }
        if stack.iter().any(|seen| seen == name) {
            return json!({});
        }
        let Some(definition) = definitions.get(name) else {
            return json!({});
        };
        stack.push(name.to_owned());
        let inlined = inline(definition, definitions, stack, false);
        stack.pop();
        return inlined;
    }
    match value {
        Value::Object(object) => {
            if let Some(reference) = object.get("$ref").and_then(Value::as_str) {
                let name = reference.trim_start_matches("#/definitions/");
                return inline(&Value::String(name.to_owned()), definitions, stack, true);
            }
            Value::Object(
                object
                    .iter()
                    .map(|(key, inner)| (key.clone(), inline(inner, definitions, stack, false)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|inner| inline(inner, definitions, stack, false))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// `schema` with `additionalProperties: false` on every object that lists
/// its properties and does not say otherwise.
fn strict(schema: Value) -> Value {
    match schema {
        Value::Object(mut object) => {
            for inner in object.values_mut() {
                *inner = strict(std::mem::take(inner));
            }
            let open = object
                .get("x-kubernetes-preserve-unknown-fields")
                .is_some_and(|v| v == true);
            if object.contains_key("properties")
                && !object.contains_key("additionalProperties")
                && !open
            {
                object.insert("additionalProperties".into(), Value::Bool(false));
            }
            Value::Object(object)
        }
        Value::Array(items) => Value::Array(items.into_iter().map(strict).collect()),
        other => other,
    }
}

/// The schema of each version a CRD file defines.
fn crd_schemas(path: &Path) -> Result<Vec<(ResourceType, Value)>> {
    let text = std::fs::read_to_string(path)
        .map_err(HarnessError::io(format!("reading {}", path.display())))?;
    let crd: Value =
        serde_saphyr::from_str(&text).map_err(|e| schema_error(path, &e.to_string()))?;
    let spec = &crd["spec"];
    let group = spec["group"]
        .as_str()
        .ok_or_else(|| schema_error(path, "no spec.group"))?;
    let kind = spec["names"]["kind"]
        .as_str()
        .ok_or_else(|| schema_error(path, "no spec.names.kind"))?;
    let versions = spec["versions"]
        .as_array()
        .ok_or_else(|| schema_error(path, "no spec.versions"))?;
    Ok(versions
        .iter()
        .filter_map(|version| {
            let name = version["name"].as_str()?;
            let schema = version["schema"]["openAPIV3Schema"].clone();
            (!schema.is_null()).then(|| {
                (
                    ResourceType {
                        api_version: format!("{group}/{name}"),
                        kind: kind.to_owned(),
                    },
                    schema,
                )
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_follow_kubeconform() {
        let name = |api_version: &str, kind: &str| {
            ResourceType {
                api_version: api_version.into(),
                kind: kind.into(),
            }
            .file_name()
        };
        assert_eq!(name("apps/v1", "StatefulSet"), "statefulset-apps-v1.json");
        assert_eq!(name("v1", "Service"), "service-v1.json");
        assert_eq!(
            name("monitoring.coreos.com/v1", "ServiceMonitor"),
            "servicemonitor-monitoring-v1.json"
        );
    }

    #[test]
    fn references_are_inlined_cycles_cut_and_objects_made_strict() {
        let definitions: Map<String, Value> = serde_json::from_value(json!({
            "Outer": {"type": "object", "properties": {
                "inner": {"$ref": "#/definitions/Inner"},
                "port": {"$ref": "#/definitions/io.k8s.apimachinery.pkg.util.intstr.IntOrString"}
            }},
            "Inner": {"type": "object", "properties": {"back": {"$ref": "#/definitions/Outer"}}}
        }))
        .unwrap();
        let schema = strict(inline(
            &Value::String("Outer".into()),
            &definitions,
            &mut Vec::new(),
            true,
        ));
        assert_eq!(
            schema,
            json!({"type": "object", "additionalProperties": false, "properties": {
                "inner": {"type": "object", "additionalProperties": false,
                          "properties": {"back": {}}},
                "port": {"oneOf": [{"type": "string"}, {"type": "integer"}]}
            }})
        );
    }
}
