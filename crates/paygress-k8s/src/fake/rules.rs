//! The API server's rules the fake enforces: RBAC, validation, selectors, merge patches.

use jiff::Timestamp;
use serde_json::{Value, json};

use super::NS;
use super::wire::status_failure;

/// One rule of a Role or ClusterRole.
#[derive(Debug, Clone)]
pub struct Rule {
    groups: Vec<String>,
    resources: Vec<String>,
    verbs: Vec<String>,
}

/// The rights of the service account: the Role (in [`NS`]) and ClusterRole rules bound
/// to it in `deploy/k8s/10-rbac.yaml`.
#[derive(Debug, Clone, Default)]
pub struct Rbac {
    namespaced: Vec<Rule>,
    cluster: Vec<Rule>,
}

impl Rbac {
    /// Reads the Role and ClusterRole bound to `paygress-sidecar` from the manifest.
    pub fn from_manifest() -> Self {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/k8s/10-rbac.yaml");
        let text = std::fs::read_to_string(path).expect("deploy/k8s/10-rbac.yaml");
        let docs: Vec<serde_json::Value> = serde_yaml::Deserializer::from_str(&text)
            .map(|d| serde::Deserialize::deserialize(d).expect("yaml"))
            .collect();
        let bound = |kind: &str, name: &str| {
            docs.iter().any(|d| {
                (d["kind"] == "RoleBinding" || d["kind"] == "ClusterRoleBinding")
                    && d["roleRef"]["kind"] == kind
                    && d["roleRef"]["name"] == name
                    && d["subjects"].as_array().is_some_and(|subjects| {
                        subjects.iter().any(|s| {
                            s["kind"] == "ServiceAccount" && s["name"] == "paygress-sidecar"
                        })
                    })
            })
        };
        let rules = |doc: &Value| -> Vec<Rule> {
            let strings = |v: &Value| -> Vec<String> {
                v.as_array()
                    .into_iter()
                    .flatten()
                    .map(|s| s.as_str().expect("string").to_owned())
                    .collect()
            };
            doc["rules"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| Rule {
                    groups: strings(&r["apiGroups"]),
                    resources: strings(&r["resources"]),
                    verbs: strings(&r["verbs"]),
                })
                .collect()
        };
        let mut rbac = Rbac::default();
        for doc in &docs {
            let name = doc["metadata"]["name"].as_str().unwrap_or_default();
            match doc["kind"].as_str() {
                Some("Role") if doc["metadata"]["namespace"] == NS && bound("Role", name) => {
                    rbac.namespaced.extend(rules(doc));
                }
                Some("ClusterRole") if bound("ClusterRole", name) => {
                    rbac.cluster.extend(rules(doc));
                }
                _ => {}
            }
        }
        rbac
    }

    pub(super) fn allows(&self, namespaced: bool, group: &str, resource: &str, verb: &str) -> bool {
        let matches = |r: &Rule| {
            r.groups.iter().any(|g| g == group || g == "*")
                && r.resources.iter().any(|x| x == resource || x == "*")
                && r.verbs.iter().any(|v| v == verb || v == "*")
        };
        self.cluster.iter().any(matches) || (namespaced && self.namespaced.iter().any(matches))
    }
}

const TIME: &str = "%Y-%m-%dT%H:%M:%SZ";

pub(super) fn time(t: Timestamp) -> String {
    t.strftime(TIME).to_string()
}

pub(super) fn parse_time(v: &Value) -> Option<Timestamp> {
    v.as_str()?.parse().ok()
}

pub(super) fn kind_of(resource: &str) -> &'static str {
    match resource {
        "jobs" => "Job",
        "pods" => "Pod",
        "services" => "Service",
        "secrets" => "Secret",
        "nodes" => "Node",
        _ => "Unknown",
    }
}

pub(super) fn group_of(resource: &str) -> &'static str {
    if resource == "jobs" { "batch" } else { "" }
}

/// JSON merge patch (RFC 7386).
pub(super) fn merge(target: &mut Value, patch: &Value) {
    if let Value::Object(p) = patch {
        if !target.is_object() {
            *target = json!({});
        }
        let t = target.as_object_mut().expect("object");
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    } else {
        *target = patch.clone();
    }
}

pub(super) fn matches_selector(object: &Value, selector: &str) -> bool {
    matches_labels(&object["metadata"]["labels"], selector)
}

/// Whether `labels` (an object's `metadata.labels`) match an equality selector.
pub(super) fn matches_labels(labels: &Value, selector: &str) -> bool {
    selector.split(',').filter(|s| !s.is_empty()).all(|term| {
        let (k, v) = term.split_once('=').expect("equality selector");
        labels[k].as_str() == Some(v)
    })
}

pub(super) fn condition_true(object: &Value, kind: &str) -> bool {
    object["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == kind && c["status"] == "True")
    })
}

pub(super) fn invalid(kind: &str, name: &str, message: &str) -> (u16, Value) {
    (
        422,
        status_failure(
            422,
            "Invalid",
            &format!("{kind} \"{name}\" is invalid: {message}"),
            kind,
            name,
        ),
    )
}

pub(super) fn valid_env_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
}

/// The Pod template rules the API server applies to what this crate sends.
pub(super) fn validate_pod_spec(spec: &Value, field: &str) -> Option<String> {
    let containers = spec["containers"].as_array()?;
    if containers.is_empty() {
        return Some(format!("{field}.containers: Required value"));
    }
    for (i, c) in containers.iter().enumerate() {
        for (j, e) in c["env"].as_array().into_iter().flatten().enumerate() {
            let name = e["name"].as_str().unwrap_or_default();
            if !valid_env_name(name) {
                return Some(format!(
                    "{field}.containers[{i}].env[{j}].name: Invalid value: {name:?}"
                ));
            }
            if e.get("value").is_some() && e.get("valueFrom").is_some() {
                return Some(format!(
                    "{field}.containers[{i}].env[{j}].valueFrom: Invalid value: may not be specified when `value` is not empty"
                ));
            }
        }
        for p in c["ports"].as_array().into_iter().flatten() {
            let port = p["containerPort"].as_i64().unwrap_or(0);
            if !(1..=65_535).contains(&port) {
                return Some(format!(
                    "{field}.containers[{i}].ports.containerPort: Invalid value: {port}"
                ));
            }
        }
        let requests = &c["resources"]["requests"];
        let limits = &c["resources"]["limits"];
        if let Some(reqs) = requests.as_object() {
            for (k, v) in reqs {
                if let Some(l) = limits.get(k)
                    && l != v
                    && !k.starts_with("cpu")
                {
                    return Some(format!(
                        "{field}.containers[{i}].resources.requests: Invalid value: {v}: must be less than or equal to {k} limit"
                    ));
                }
            }
        }
    }
    None
}

pub(super) fn b64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
