//! No private key in a ConfigMap or a plain env value; the Deployment's key from an
//! optional Secret; its data directory private to the service.

use serde_json::Value;

use super::{find, name_of};

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
pub(crate) fn secrets_policy(objects: &[Value], generated_cm: Option<&Value>) -> Vec<String> {
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
