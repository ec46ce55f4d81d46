//! `docs/openapi.json` is the generated document. Regenerate it with
//! `PAYGRESS_UPDATE_OPENAPI=1 cargo test -p paygress-http --test openapi`.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

#[test]
fn committed_openapi_matches_generated() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json");
    let generated = paygress_http::openapi_json_string().unwrap();
    if std::env::var_os("PAYGRESS_UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is stale; regenerate with PAYGRESS_UPDATE_OPENAPI=1 cargo test -p paygress-http --test openapi",
        path.display()
    );
}

#[test]
fn document_is_openapi_3_1_with_every_endpoint() {
    let doc: serde_json::Value =
        serde_json::from_str(&paygress_http::openapi_json_string().unwrap()).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = doc["paths"].as_object().unwrap();
    let mut names: Vec<&str> = paths.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "/auth",
            "/healthz",
            "/offer",
            "/openapi.json",
            "/pods",
            "/pods/{name}",
            "/pods/{name}/release",
            "/spawn-pod",
            "/top-up-pod"
        ]
    );
    // Every error answer documents the typed body.
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            for (status, resp) in op["responses"].as_object().unwrap() {
                if status.starts_with('4') || (status.starts_with('5') && path != "/healthz") {
                    let schema = &resp["content"]["application/json"]["schema"]["$ref"];
                    assert_eq!(
                        schema, "#/components/schemas/ErrorBody",
                        "{method} {path} {status}"
                    );
                }
            }
        }
    }
}

fn doc() -> serde_json::Value {
    serde_json::from_str(&paygress_http::openapi_json_string().unwrap()).unwrap()
}

fn param<'a>(op: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    op["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no parameter {name}"))
}

#[test]
fn document_states_the_constraints_the_server_enforces() {
    let doc = doc();
    let schemas = &doc["components"]["schemas"];
    // Token format, wherever a token goes.
    for (schema, field) in [
        ("SpawnPodBody", "cashu_token"),
        ("TopUpPodBody", "cashu_token"),
        ("AuthBody", "token"),
    ] {
        let prop = &schemas[schema]["properties"][field];
        assert_eq!(prop["pattern"], paygress_http::TOKEN_PATTERN, "{schema}");
        assert_eq!(
            prop["maxLength"],
            paygress_http::MAX_TOKEN_CHARS,
            "{schema}"
        );
    }
    let paths = &doc["paths"];
    for (path, method) in [
        ("/spawn-pod", "post"),
        ("/top-up-pod", "post"),
        ("/auth", "get"),
        ("/auth", "post"),
    ] {
        let op = &paths[path][method];
        let x_cashu = &param(op, "X-Cashu")["schema"];
        assert_eq!(x_cashu["pattern"], paygress_http::TOKEN_PATTERN);
        assert_eq!(x_cashu["maxLength"], paygress_http::MAX_TOKEN_CHARS);
        if path != "/auth" {
            let key = &param(op, "Idempotency-Key")["schema"];
            assert_eq!(key["pattern"], paygress_http::IDEMPOTENCY_KEY_PATTERN);
            assert_eq!(key["minLength"], paygress_http::IDEMPOTENCY_KEY_MIN);
            assert_eq!(key["maxLength"], paygress_http::IDEMPOTENCY_KEY_MAX);
        }
    }
    assert_eq!(
        param(&paths["/auth"]["get"], "token")["schema"]["pattern"],
        paygress_http::TOKEN_PATTERN
    );
    // Names, as core parses them.
    let lease = paygress_core::LeaseId::generate().to_string();
    let lease_pattern = r"^ssh-pod-[a-z0-9]{8}$";
    assert_eq!(
        schemas["TopUpPodBody"]["properties"]["pod_name"]["pattern"],
        lease_pattern
    );
    assert_eq!(
        param(&paths["/pods/{name}"]["get"], "name")["schema"]["pattern"],
        lease_pattern
    );
    assert!(lease.starts_with("ssh-pod-") && lease.len() == 16);
    let user = &schemas["SpawnPodBody"]["properties"]["ssh_username"];
    assert_eq!(user["pattern"], r"^[a-z_][a-z0-9_-]{0,31}$");
    for name in ["alice", "_x", "a-b_9", &"a".repeat(32)] {
        assert!(name.parse::<paygress_core::Username>().is_ok(), "{name}");
    }
    for name in ["", "Alice", "9a", "a b", &"a".repeat(33)] {
        assert!(name.parse::<paygress_core::Username>().is_err(), "{name}");
    }
    assert_eq!(
        schemas["SpawnPodBody"]["properties"]["duration_minutes"]["minimum"],
        1
    );
}

#[test]
fn every_endpoint_documents_rate_limits_and_503_and_no_other_5xx() {
    let doc = doc();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let responses = op["responses"].as_object().unwrap();
            for status in responses.keys() {
                assert!(
                    !status.starts_with('5') || status == "503",
                    "{method} {path} documents {status}"
                );
            }
            assert!(responses.contains_key("503"), "{method} {path}: no 503");
            if path != "/healthz" {
                assert!(responses.contains_key("429"), "{method} {path}: no 429");
            }
        }
    }
}
