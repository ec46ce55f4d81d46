//! How many API calls one create makes, and how many of them it waits for one after
//! another. The fake answers every call after the same latency on tokio's paused clock,
//! so the time a create takes is exactly its serial round trips times that latency: a
//! structural count, not a timing.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use std::time::Duration;

use common::{Fake, on_fake, spec_now};
use http::Method;
use paygress_core::{LeasePhase, PodBackend};
use paygress_k8s::{K8sConfig, ServiceType};

const RTT: Duration = Duration::from_millis(25);

fn calls(fake: &Fake) -> Vec<String> {
    fake.log()
        .iter()
        .map(|s| {
            let watch = if s.query.contains_key("watch") {
                "?watch"
            } else {
                ""
            };
            format!("{} {}{watch}", s.method, s.path)
        })
        .collect()
}

/// The calls sent before the create returned: every call but the writes it left to
/// finish (ownerReferences, the started patch), which are PATCHes.
fn critical(fake: &Fake) -> Vec<String> {
    calls(fake)
        .into_iter()
        .filter(|c| !c.starts_with("PATCH"))
        .collect()
}

/// One round trip: the Job, its Secret and Service, and the pod watch, together (the
/// pod cannot start before its Secret exists; the watch sees it Ready meanwhile). The
/// ownerReferences and the write that starts the paid clock follow the reply.
#[tokio::test(start_paused = true)]
async fn a_create_waits_for_one_round_trip_and_makes_four_calls_before_replying() {
    let (client, fake) = Fake::start_with_latency(RTT);
    let config = K8sConfig {
        ssh_host: Some("pods.example.org".to_owned()),
        ..K8sConfig::default()
    };
    let backend = on_fake(client, &fake, config);
    let spec = spec_now(&fake, 5);
    let t0 = tokio::time::Instant::now();
    let provisioned = backend.create(&spec).await.expect("create");
    assert_eq!(t0.elapsed(), RTT, "{:?}", calls(&fake));
    assert_eq!(provisioned.node_port, Some(30_000));
    assert_eq!(provisioned.ssh_host.as_deref(), Some("pods.example.org"));
    // Readiness came from one watch, opened without a list first.
    let log = fake.log();
    let pods: Vec<_> = log.iter().filter(|s| s.path.ends_with("/pods")).collect();
    assert_eq!(pods.len(), 1, "{:?}", calls(&fake));
    assert!(pods[0].query.contains_key("watch"));
    assert_eq!(pods[0].method, Method::GET);
    // A read right after the reply: one round trip, the lease as the started patch
    // (still on its way) makes it.
    let t1 = tokio::time::Instant::now();
    let record = backend.get(&spec.id).await.unwrap().expect("the lease");
    assert_eq!(t1.elapsed(), RTT);
    assert_eq!(record.phase, LeasePhase::Running);
    assert_eq!(Some(record.expires_at), provisioned.expires_at);
    // After the reply: two ownerReference patches and the started patch.
    backend.settled(&spec.id).await;
    assert_eq!(t0.elapsed(), RTT * 2, "{:?}", calls(&fake));
    let calls = calls(&fake);
    assert_eq!(
        critical(&fake).len(),
        4 + 2,
        "four, then get's two: {calls:?}"
    );
    assert_eq!(
        calls.iter().filter(|c| c.starts_with("PATCH")).count(),
        3,
        "{calls:?}"
    );
    let job_uid = fake.object("jobs", spec.id.as_str()).unwrap()["metadata"]["uid"].clone();
    for (resource, name) in [
        ("secrets", format!("{}-auth", spec.id)),
        ("services", format!("{}-ssh", spec.id)),
    ] {
        let object = fake.object(resource, &name).unwrap();
        assert_eq!(object["metadata"]["ownerReferences"][0]["uid"], job_uid);
    }
}

/// Without `SSH_HOST`, the address of the pod's node is read once, then remembered:
/// the first create on a node waits one more round trip, the next ones do not.
#[tokio::test(start_paused = true)]
async fn the_node_address_is_read_once_per_node() {
    let (client, fake) = Fake::start_with_latency(RTT);
    let backend = on_fake(client, &fake, K8sConfig::default());
    for (n, round_trips) in [(1, 2), (2, 1), (3, 1)] {
        let t0 = tokio::time::Instant::now();
        let provisioned = backend.create(&spec_now(&fake, 5)).await.expect("create");
        assert_eq!(
            t0.elapsed(),
            RTT * round_trips,
            "create {n}: {:?}",
            calls(&fake)
        );
        assert_eq!(provisioned.ssh_host.as_deref(), Some("172.18.0.3"));
    }
    let nodes = critical(&fake)
        .into_iter()
        .filter(|c| c.contains("/nodes"))
        .count();
    assert_eq!(nodes, 1, "{:?}", calls(&fake));
}

/// The startup check reads every node: the first create needs no node lookup either.
#[tokio::test(start_paused = true)]
async fn the_startup_check_remembers_the_node_addresses() {
    let (client, fake) = Fake::start_with_latency(RTT);
    let backend = on_fake(client, &fake, K8sConfig::default());
    backend.check_reachability().await.expect("reachable");
    let t0 = tokio::time::Instant::now();
    let provisioned = backend.create(&spec_now(&fake, 5)).await.expect("create");
    assert_eq!(t0.elapsed(), RTT, "{:?}", calls(&fake));
    assert_eq!(provisioned.ssh_host.as_deref(), Some("172.18.0.3"));
}

/// A LoadBalancer's address comes from a watch of the Service from the version its
/// create answered with: one more round trip, only when the address is not there yet.
#[tokio::test(start_paused = true)]
async fn a_load_balancer_adds_one_watch() {
    let (client, fake) = Fake::start_with_latency(RTT);
    fake.load_balancer_ip(Some("203.0.113.7"));
    let config = K8sConfig {
        service_type: ServiceType::LoadBalancer,
        ..K8sConfig::default()
    };
    let backend = on_fake(client, &fake, config);
    let t0 = tokio::time::Instant::now();
    let provisioned = backend.create(&spec_now(&fake, 5)).await.expect("create");
    assert_eq!(provisioned.ssh_host.as_deref(), Some("203.0.113.7"));
    assert!(t0.elapsed() <= RTT * 2, "{:?}", calls(&fake));
    assert!(critical(&fake).len() <= 5, "{:?}", calls(&fake));
}
