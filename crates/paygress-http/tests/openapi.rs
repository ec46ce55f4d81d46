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
