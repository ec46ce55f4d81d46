//! The Grafana dashboard in deploy/ queries only series the service exports.

use std::collections::BTreeSet;

use paygress_core::observe;

#[test]
fn dashboard_queries_only_exported_series() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/grafana/paygress-dashboard.json"
    );
    let text = std::fs::read_to_string(path).expect("dashboard");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    let exported: BTreeSet<&str> = [
        observe::REQUESTS,
        observe::REQUEST_SECONDS,
        observe::PHASE_SECONDS,
        observe::PORT_CALL_SECONDS,
        observe::MINT_ERRORS,
        observe::RECEIVED_MSAT,
        observe::PAID_BACK_MSAT,
        observe::OWED_MSAT,
        observe::LEASES_ACTIVE,
        observe::RELAYS_CONNECTED,
        observe::JOURNAL_BYTES,
        observe::JOURNAL_UNFINISHED,
    ]
    .into_iter()
    .collect();
    let mut used = BTreeSet::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            let mut rest = expr;
            while let Some(i) = rest.find("paygress_") {
                let name: String = rest[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                rest = &rest[i + name.len()..];
                let base = ["_bucket", "_count", "_sum"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s))
                    .unwrap_or(&name)
                    .to_owned();
                assert!(
                    exported.contains(base.as_str()),
                    "{base} in {expr:?} is not exported"
                );
                used.insert(base);
            }
        }
    }
    for name in exported {
        assert!(used.contains(name), "{name} has no panel");
    }
}
