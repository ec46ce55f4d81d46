//! Offline schema and policy check of the manifests in `deploy/`, called by
//! `deploy/validate.sh` with the JSON that `kubectl apply --dry-run=client -o json`
//! printed for them.
//!
//! Schema: each object is decoded into its `k8s-openapi` type and encoded again; a field
//! the type does not know (a typo, a wrong nesting) is dropped on the way and reported.
//! Policy: the RBAC is namespaced and exactly what `paygress-k8s` uses, the Deployment
//! has the service account, ConfigMap, probes and persistent data volume the docs promise.
//! Secrets: no ConfigMap (shipped, or generated from `paygress.env.example`) and no plain
//! `env` value holds a private key (`NOSTR_PRIVATE_KEY`, an `nsec1…`); the Deployment
//! takes `NOSTR_PRIVATE_KEY` from an optional `secretKeyRef`; its data directory is a
//! 0700 subdirectory of the volume, which belongs to the service's own group.
//!
//! Usage: `check_manifests <objects.json>... [--configmap-from-env <configmap.json>]`

use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{
    ConfigMap, LimitRange, Namespace, PersistentVolumeClaim, Pod, ResourceQuota, Secret, Service,
    ServiceAccount,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

fn main() -> ExitCode {
    match run() {
        Ok(n) => {
            println!("check_manifests: {n} objects OK");
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in &errors {
                eprintln!("check_manifests: {e}");
            }
            ExitCode::FAILURE
        }
    }
}

fn read(path: &str) -> Result<Vec<Value>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let value: Value = serde_json::from_str(&text).map_err(|e| format!("{path}: {e}"))?;
    Ok(match value.get("kind").and_then(Value::as_str) {
        Some("List") => value["items"].as_array().cloned().unwrap_or_default(),
        _ => vec![value],
    })
}

fn run() -> Result<usize, Vec<String>> {
    let mut args = std::env::args().skip(1);
    let mut objects = Vec::new();
    let mut generated_cm = None;
    let mut errors = Vec::new();
    while let Some(arg) = args.next() {
        if arg == "--configmap-from-env" {
            match args.next().map(|p| read(&p)) {
                Some(Ok(mut v)) if v.len() == 1 => generated_cm = v.pop(),
                Some(Err(e)) => errors.push(e),
                _ => errors.push("--configmap-from-env needs one ConfigMap".to_owned()),
            }
            continue;
        }
        match read(&arg) {
            Ok(v) => objects.extend(v),
            Err(e) => errors.push(e),
        }
    }
    for object in &mut objects {
        strip_kubectl_fields(object);
        if let Err(e) = round_trip(object) {
            errors.push(e);
        }
    }
    errors.extend(policy(&objects, generated_cm.as_ref()));
    errors.extend(secrets_policy(&objects, generated_cm.as_ref()));
    if errors.is_empty() {
        Ok(objects.len())
    } else {
        Err(errors)
    }
}

fn strip_kubectl_fields(object: &mut Value) {
    if let Some(ann) = object["metadata"]
        .get_mut("annotations")
        .and_then(Value::as_object_mut)
    {
        ann.remove(LAST_APPLIED);
        if ann.is_empty()
            && let Some(meta) = object["metadata"].as_object_mut()
        {
            meta.remove("annotations");
        }
    }
}

fn name_of(object: &Value) -> String {
    format!(
        "{}/{}",
        object["kind"].as_str().unwrap_or("?"),
        object["metadata"]["name"].as_str().unwrap_or("?")
    )
}

fn typed<T: DeserializeOwned + Serialize>(object: &Value) -> Result<Value, String> {
    let t: T = serde_json::from_value(object.clone())
        .map_err(|e| format!("{}: does not decode: {e}", name_of(object)))?;
    serde_json::to_value(t).map_err(|e| format!("{}: {e}", name_of(object)))
}

fn round_trip(object: &Value) -> Result<(), String> {
    let again = match object["kind"].as_str().unwrap_or("") {
        "Namespace" => typed::<Namespace>(object)?,
        "ServiceAccount" => typed::<ServiceAccount>(object)?,
        "Role" => typed::<Role>(object)?,
        "ClusterRole" => typed::<ClusterRole>(object)?,
        "ClusterRoleBinding" => typed::<ClusterRoleBinding>(object)?,
        "LimitRange" => typed::<LimitRange>(object)?,
        "ResourceQuota" => typed::<ResourceQuota>(object)?,
        "RoleBinding" => typed::<RoleBinding>(object)?,
        "Deployment" => typed::<Deployment>(object)?,
        "Service" => typed::<Service>(object)?,
        "PersistentVolumeClaim" => typed::<PersistentVolumeClaim>(object)?,
        "ConfigMap" => typed::<ConfigMap>(object)?,
        "Secret" => typed::<Secret>(object)?,
        "NetworkPolicy" => typed::<NetworkPolicy>(object)?,
        "Job" => typed::<Job>(object)?,
        "Pod" => typed::<Pod>(object)?,
        other => return Err(format!("{}: unexpected kind {other:?}", name_of(object))),
    };
    let mut diffs = Vec::new();
    diff("", object, &again, &mut diffs);
    if diffs.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{}: fields unknown to the schema or of the wrong type: {}",
            name_of(object),
            diffs.join(", ")
        ))
    }
}

fn diff(path: &str, want: &Value, got: &Value, out: &mut Vec<String>) {
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => {
            for (k, wv) in w {
                let p = format!("{path}.{k}");
                match g.get(k) {
                    Some(gv) => diff(&p, wv, gv, out),
                    None => out.push(p),
                }
            }
        }
        (Value::Array(w), Value::Array(g)) if w.len() == g.len() => {
            for (i, (wv, gv)) in w.iter().zip(g).enumerate() {
                diff(&format!("{path}[{i}]"), wv, gv, out);
            }
        }
        (w, g) if w == g => {}
        _ => out.push(path.to_owned()),
    }
}

fn find<'a>(objects: &'a [Value], kind: &str, ns: Option<&str>, name: &str) -> Option<&'a Value> {
    objects.iter().find(|o| {
        o["kind"] == kind
            && o["metadata"]["name"] == name
            && o["metadata"]["namespace"].as_str() == ns
    })
}

fn policy(objects: &[Value], generated_cm: Option<&Value>) -> Vec<String> {
    let mut errors = Vec::new();
    let mut check = |ok: bool, what: &str| {
        if !ok {
            errors.push(what.to_owned());
        }
    };
    // Cluster-wide: only reading nodes (the address buyers reach a NodePort at).
    for o in objects {
        let kind = o["kind"].as_str().unwrap_or("");
        if kind == "ClusterRole" {
            check(
                o["metadata"]["name"] == "paygress-nodes"
                    && o["rules"]
                        == serde_json::json!([{
                            "apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list"],
                        }]),
                &format!(
                    "{}: the only cluster-wide right is reading nodes (ClusterRole paygress-nodes)",
                    name_of(o)
                ),
            );
        }
        if kind == "ClusterRoleBinding" {
            check(
                o["roleRef"]["kind"] == "ClusterRole"
                    && o["roleRef"]["name"] == "paygress-nodes"
                    && o["subjects"].as_array().is_some_and(|s| {
                        s.len() == 1
                            && s[0]["kind"] == "ServiceAccount"
                            && s[0]["name"] == "paygress-sidecar"
                            && s[0]["namespace"] == "ingress-system"
                    }),
                &format!(
                    "{}: may only bind ClusterRole paygress-nodes to ingress-system/paygress-sidecar",
                    name_of(o)
                ),
            );
        }
    }
    for ns in ["ingress-system", "user-workloads"] {
        check(
            find(objects, "Namespace", None, ns).is_some(),
            &format!("namespace {ns} missing"),
        );
    }
    check(
        find(
            objects,
            "ServiceAccount",
            Some("ingress-system"),
            "paygress-sidecar",
        )
        .is_some(),
        "ServiceAccount ingress-system/paygress-sidecar missing",
    );
    // The Role: exactly the calls paygress-k8s makes (its fake API server enforces the
    // same file), nothing else.
    let mut want: BTreeMap<(String, String), BTreeSet<&str>> = BTreeMap::new();
    for (group, resource, verbs) in [
        (
            "batch",
            "jobs",
            &["create", "get", "list", "patch", "delete"][..],
        ),
        ("", "pods", &["list", "watch", "delete"][..]),
        (
            "",
            "services",
            &["create", "get", "list", "watch", "delete"][..],
        ),
        ("", "secrets", &["create", "list", "delete"][..]),
    ] {
        want.insert(
            (group.to_owned(), resource.to_owned()),
            verbs.iter().copied().collect(),
        );
    }
    let roles: Vec<&Value> = objects.iter().filter(|o| o["kind"] == "Role").collect();
    check(roles.len() == 1, "exactly one Role expected");
    for role in roles {
        check(
            role["metadata"]["namespace"] == "user-workloads",
            "the Role must be in user-workloads",
        );
        let mut got: BTreeMap<(String, String), BTreeSet<&str>> = BTreeMap::new();
        for rule in role["rules"].as_array().into_iter().flatten() {
            for g in rule["apiGroups"].as_array().into_iter().flatten() {
                for r in rule["resources"].as_array().into_iter().flatten() {
                    let entry = got
                        .entry((
                            g.as_str().unwrap_or("?").to_owned(),
                            r.as_str().unwrap_or("?").to_owned(),
                        ))
                        .or_default();
                    for v in rule["verbs"].as_array().into_iter().flatten() {
                        entry.insert(v.as_str().unwrap_or("?"));
                    }
                }
            }
            check(
                rule.get("resourceNames").is_none() && rule.get("nonResourceURLs").is_none(),
                "the Role has unexpected rule fields",
            );
        }
        check(
            got == want,
            &format!("Role rules are {got:?}, want {want:?}"),
        );
    }
    let binding = find(
        objects,
        "RoleBinding",
        Some("user-workloads"),
        "paygress-leases",
    );
    check(
        binding.is_some_and(|b| {
            b["roleRef"]["kind"] == "Role"
                && b["subjects"].as_array().is_some_and(|s| {
                    s.len() == 1
                        && s[0]["kind"] == "ServiceAccount"
                        && s[0]["name"] == "paygress-sidecar"
                        && s[0]["namespace"] == "ingress-system"
                })
        }),
        "RoleBinding user-workloads/paygress-leases must bind the Role to ingress-system/paygress-sidecar only",
    );
    match find(
        objects,
        "Deployment",
        Some("ingress-system"),
        "paygress-sidecar",
    ) {
        None => check(false, "Deployment ingress-system/paygress-sidecar missing"),
        Some(d) => {
            let pod = &d["spec"]["template"]["spec"];
            check(
                pod["serviceAccountName"] == "paygress-sidecar",
                "Deployment: serviceAccountName",
            );
            let c = &pod["containers"][0];
            check(
                c["envFrom"].as_array().is_some_and(|e| {
                    e.iter()
                        .any(|x| x["configMapRef"]["name"] == "paygress-sidecar-config")
                }),
                "Deployment: envFrom ConfigMap paygress-sidecar-config",
            );
            let port_of = |p: &Value| -> Option<i64> {
                p.as_i64().or_else(|| {
                    c["ports"].as_array()?.iter().find(|x| x["name"] == *p)?["containerPort"]
                        .as_i64()
                })
            };
            // Readiness is deep (/healthz asks the backend); liveness is shallow (a slow
            // API server must not restart the service).
            let h = &c["readinessProbe"]["httpGet"];
            check(
                h["path"] == "/healthz" && port_of(&h["port"]) == Some(8080),
                "Deployment: readinessProbe must GET /healthz on 8080",
            );
            check(
                c["livenessProbe"].get("httpGet").is_none()
                    && port_of(&c["livenessProbe"]["tcpSocket"]["port"]) == Some(8080),
                "Deployment: livenessProbe must be a TCP check on 8080 (not /healthz, which asks the API server)",
            );
            let data_volume = c["volumeMounts"]
                .as_array()
                .and_then(|m| m.iter().find(|m| m["mountPath"] == "/app/data"))
                .and_then(|m| m["name"].as_str());
            let persistent = data_volume.is_some_and(|name| {
                pod["volumes"].as_array().is_some_and(|vs| {
                    vs.iter()
                        .any(|v| v["name"] == name && v.get("persistentVolumeClaim").is_some())
                })
            });
            check(
                persistent,
                "Deployment: /app/data must be a PersistentVolumeClaim",
            );
        }
    }
    check(
        find(
            objects,
            "Service",
            Some("ingress-system"),
            "paygress-sidecar",
        )
        .is_some_and(|s| {
            s["spec"]["ports"]
                .as_array()
                .is_some_and(|p| p.iter().any(|p| p["port"] == 8080))
        }),
        "Service ingress-system/paygress-sidecar:8080 missing",
    );
    if let Some(generated) = generated_cm {
        let example = find(
            objects,
            "ConfigMap",
            Some("ingress-system"),
            "paygress-sidecar-config",
        );
        check(
            example.is_some_and(|e| e["data"] == generated["data"]),
            "configmap.example.yaml must hold exactly what paygress.env.example generates",
        );
    }
    errors
}

/// The environment variable that holds the service's Nostr key.
const KEY_VAR: &str = "NOSTR_PRIVATE_KEY";
/// Where the Deployment mounts the persistent volume.
const DATA_MOUNT: &str = "/app/data";

/// Whether a ConfigMap key or an env var name is for a private key.
fn is_key_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    upper == KEY_VAR || upper.contains("PRIVATE_KEY") || upper.contains("NSEC")
}

/// Whether `value` holds something shaped like a bech32 Nostr secret key.
fn holds_nsec(value: &str) -> bool {
    value.match_indices("nsec1").any(|(i, _)| {
        value[i + 5..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .count()
            >= 20
    })
}

/// No private key in any ConfigMap or plain env value; the Deployment's key from an
/// optional Secret; its data directory private to the service's uid.
fn secrets_policy(objects: &[Value], generated_cm: Option<&Value>) -> Vec<String> {
    let mut errors = Vec::new();
    let configmaps = objects
        .iter()
        .filter(|o| o["kind"] == "ConfigMap")
        .map(|o| (name_of(o), o))
        .chain(
            generated_cm.map(|g| ("the ConfigMap made from paygress.env.example".to_owned(), g)),
        );
    for (what, cm) in configmaps {
        for field in ["data", "binaryData"] {
            for (k, v) in cm[field].as_object().into_iter().flatten() {
                if is_key_name(k) {
                    errors.push(format!(
                        "{what}: {k} is a private key and must not be in a ConfigMap \
                         (use the Secret paygress-nostr-key, see deploy/README.md)"
                    ));
                } else if v.as_str().is_some_and(holds_nsec) {
                    errors.push(format!(
                        "{what}: {k} holds an nsec; private keys must not be in a ConfigMap"
                    ));
                }
            }
        }
    }
    for o in objects {
        let kind = o["kind"].as_str().unwrap_or("");
        let pod = match kind {
            "Deployment" | "Job" => &o["spec"]["template"]["spec"],
            "Pod" => &o["spec"],
            _ => continue,
        };
        let containers = ["initContainers", "containers"]
            .iter()
            .flat_map(|k| pod[*k].as_array().into_iter().flatten());
        for c in containers {
            for e in c["env"].as_array().into_iter().flatten() {
                let name = e["name"].as_str().unwrap_or("");
                let literal = e.get("value").and_then(Value::as_str);
                if literal.is_some_and(holds_nsec)
                    || (is_key_name(name) && literal.is_some_and(|v| !v.is_empty()))
                {
                    errors.push(format!(
                        "{}: env {name} holds a private key in plain text; use secretKeyRef",
                        name_of(o)
                    ));
                }
            }
        }
    }
    let Some(d) = find(
        objects,
        "Deployment",
        Some("ingress-system"),
        "paygress-sidecar",
    ) else {
        return errors;
    };
    let pod = &d["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    let env = |name: &str| {
        c["env"]
            .as_array()
            .and_then(|es| es.iter().find(|e| e["name"] == name))
    };
    let secret_ref = env(KEY_VAR).map(|e| &e["valueFrom"]["secretKeyRef"]);
    if !secret_ref.is_some_and(|r| r["name"].is_string() && r["key"].is_string()) {
        errors.push(format!(
            "Deployment: {KEY_VAR} must come from a Secret (env valueFrom.secretKeyRef)"
        ));
    } else if !secret_ref.is_some_and(|r| r["optional"] == true) {
        errors.push(format!(
            "Deployment: the {KEY_VAR} secretKeyRef must be optional (a generated key must still work)"
        ));
    }
    let sc = &pod["securityContext"];
    let uid = sc["runAsUser"].as_i64();
    if !(uid.is_some_and(|u| u > 0)
        && sc["fsGroup"].as_i64().is_some()
        && sc["fsGroup"] == sc["runAsGroup"])
    {
        errors.push(
            "Deployment: the data volume must belong to the service's own group \
             (pod securityContext runAsUser, and fsGroup equal to runAsGroup)"
                .to_owned(),
        );
    }
    if sc["fsGroupChangePolicy"] != "OnRootMismatch" {
        errors.push(
            "Deployment: fsGroupChangePolicy must be OnRootMismatch (with Always, kubelet \
             opens every file of the data volume to the group on each mount)"
                .to_owned(),
        );
    }
    let data_dir = env("PAYGRESS_DATA_DIR").and_then(|e| e["value"].as_str());
    if !data_dir.is_some_and(|d| {
        d.strip_prefix(DATA_MOUNT)
            .and_then(|rest| rest.strip_prefix('/'))
            .is_some_and(|sub| !sub.trim_matches('/').is_empty())
    }) {
        errors.push(format!(
            "Deployment: PAYGRESS_DATA_DIR must be a subdirectory of {DATA_MOUNT} (the \
             volume's root is group-writable under fsGroup; the service creates the \
             subdirectory 0700)"
        ));
    }
    errors
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn configmap(data: Value) -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "paygress-sidecar-config", "namespace": "ingress-system"},
            "data": data,
        })
    }

    fn deployment(env: Value, security: Value) -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "paygress-sidecar", "namespace": "ingress-system"},
            "spec": {"template": {"spec": {
                "securityContext": security,
                "containers": [{"name": "paygress", "env": env}],
            }}},
        })
    }

    fn good_env() -> Value {
        json!([
            {"name": "PAYGRESS_DATA_DIR", "value": "/app/data/paygress"},
            {"name": "NOSTR_PRIVATE_KEY", "valueFrom": {"secretKeyRef": {
                "name": "paygress-nostr-key", "key": "NOSTR_PRIVATE_KEY", "optional": true}}},
        ])
    }

    fn good_security() -> Value {
        json!({"runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001,
               "fsGroupChangePolicy": "OnRootMismatch"})
    }

    const NSEC: &str = "nsec1fakefakefakefakefakefakefakefakefakefakefakefakefakefake00";

    #[test]
    fn shipped_shape_passes() {
        let objects = [
            configmap(json!({"RUN_MODE": "both"})),
            deployment(good_env(), good_security()),
        ];
        let generated = configmap(json!({"RUN_MODE": "both"}));
        assert_eq!(
            secrets_policy(&objects, Some(&generated)),
            Vec::<String>::new()
        );
    }

    #[test]
    fn a_key_in_a_configmap_is_rejected() {
        let good = deployment(good_env(), good_security());
        for data in [
            json!({"NOSTR_PRIVATE_KEY": NSEC}),
            json!({"NOSTR_PRIVATE_KEY": ""}),
            json!({"SERVICE_KEY": NSEC}),
        ] {
            let errors = secrets_policy(&[configmap(data.clone()), good.clone()], None);
            assert_eq!(errors.len(), 1, "{data}: {errors:?}");
            assert!(errors[0].contains("ConfigMap"), "{errors:?}");
        }
        // The paygress.env.example flow, generated by kubectl.
        let generated = configmap(json!({"RUN_MODE": "both", "NOSTR_PRIVATE_KEY": NSEC}));
        let errors = secrets_policy(std::slice::from_ref(&good), Some(&generated));
        assert!(
            errors.len() == 1 && errors[0].contains("paygress.env.example"),
            "{errors:?}"
        );
    }

    #[test]
    fn a_key_in_plain_env_or_a_required_secret_is_rejected() {
        let plain = json!([
            {"name": "PAYGRESS_DATA_DIR", "value": "/app/data/paygress"},
            {"name": "NOSTR_PRIVATE_KEY", "value": NSEC},
        ]);
        let errors = secrets_policy(&[deployment(plain, good_security())], None);
        assert!(
            errors.iter().any(|e| e.contains("plain text"))
                && errors.iter().any(|e| e.contains("must come from a Secret")),
            "{errors:?}"
        );
        let mut required = good_env();
        required[1]["valueFrom"]["secretKeyRef"]["optional"] = json!(false);
        let errors = secrets_policy(&[deployment(required, good_security())], None);
        assert!(
            errors.len() == 1 && errors[0].contains("optional"),
            "{errors:?}"
        );
    }

    #[test]
    fn the_data_directory_must_be_private_to_the_service() {
        let mut env = good_env();
        env[0]["value"] = json!("/app/data");
        let errors = secrets_policy(&[deployment(env, good_security())], None);
        assert!(
            errors.len() == 1 && errors[0].contains("subdirectory"),
            "{errors:?}"
        );
        let mut sc = good_security();
        sc["fsGroupChangePolicy"] = json!("Always");
        sc["fsGroup"] = json!(0);
        let errors = secrets_policy(&[deployment(good_env(), sc)], None);
        assert_eq!(errors.len(), 2, "{errors:?}");
    }

    #[test]
    fn nsec_shapes() {
        assert!(holds_nsec(NSEC));
        assert!(holds_nsec(&format!("key={NSEC}")));
        assert!(!holds_nsec("nsec1"));
        assert!(!holds_nsec("wss://relay.example/nsec1abc"));
    }
}
