//! Offline schema and policy check of the manifests in `deploy/`, called by
//! `deploy/validate.sh` with the JSON that `kubectl apply --dry-run=client -o json`
//! printed for them.
//!
//! Schema: each object is decoded into its `k8s-openapi` type and encoded again; a field
//! the type does not know (a typo, a wrong nesting) is dropped on the way and reported.
//! Policy: the RBAC is namespaced and exactly what `paygress-k8s` uses, the Deployment
//! has the service account, ConfigMap, probes and persistent data volume the docs promise.
//!
//! Usage: `check_manifests <objects.json>... [--configmap-from-env <configmap.json>]`

use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{
    ConfigMap, Namespace, PersistentVolumeClaim, Pod, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
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
    for o in objects {
        let kind = o["kind"].as_str().unwrap_or("");
        check(
            kind != "ClusterRole" && kind != "ClusterRoleBinding",
            &format!("{}: no cluster-wide rights allowed", name_of(o)),
        );
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
    // The Role: exactly these resources and verbs, nothing else.
    let verbs: BTreeSet<&str> = ["create", "get", "list", "watch", "patch", "delete"].into();
    let mut want: BTreeMap<(String, String), BTreeSet<&str>> = BTreeMap::new();
    for (group, resource) in [
        ("batch", "jobs"),
        ("", "pods"),
        ("", "services"),
        ("", "secrets"),
    ] {
        want.insert((group.to_owned(), resource.to_owned()), verbs.clone());
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
            for probe in ["readinessProbe", "livenessProbe"] {
                let h = &c[probe]["httpGet"];
                check(
                    h["path"] == "/healthz" && port_of(&h["port"]) == Some(8080),
                    &format!("Deployment: {probe} must GET /healthz on 8080"),
                );
            }
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
