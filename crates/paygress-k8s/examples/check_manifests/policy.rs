//! The policy of the deployment: namespaced RBAC that is exactly what `paygress-k8s`
//! uses, and the Deployment's service account, ConfigMap, probes and data volume.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::{find, name_of};

pub(crate) fn policy(objects: &[Value], generated_cm: Option<&Value>) -> Vec<String> {
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
            &["create", "get", "list", "watch", "patch", "delete"][..],
        ),
        ("", "pods", &["list", "watch", "delete"][..]),
        (
            "",
            "services",
            &["create", "get", "list", "watch", "patch", "delete"][..],
        ),
        // patch: the ownerReference to the Job, set after the create's reply.
        ("", "secrets", &["create", "list", "patch", "delete"][..]),
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
