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

// The modules sit beside this file (not in `examples/`, where Cargo would take them for
// examples of their own).
#[path = "check_manifests/policy.rs"]
mod policy;
#[path = "check_manifests/secrets.rs"]
mod secrets;

use policy::policy;
use secrets::secrets_policy;

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
