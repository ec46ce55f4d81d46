//! How many API calls one create makes, and how many of them it waits for one after
//! another. The fake answers every call after the same latency on tokio's paused clock,
//! so the time a create takes is exactly its serial round trips times that latency: a
//! structural count, not a timing.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use std::time::Duration;

use common::{Fake, on_fake, spec_now};
use http::Method;
use paygress_core::PodBackend;
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

/// Round trips one after another: the Job (its uid is in the dependents'
/// ownerReferences), then the Secret and Service together (the pod cannot start before
/// its Secret exists; the pod watch, opened with the Job, sees it Ready meanwhile), then
/// the write that starts the paid clock, with the node lookup beside it.
#[tokio::test(start_paused = true)]
async fn a_create_waits_for_three_round_trips_and_makes_six_calls() {
    let (client, fake) = Fake::start_with_latency(RTT);
    let backend = on_fake(client, &fake, K8sConfig::default());
    let spec = spec_now(&fake, 5);
    let t0 = tokio::time::Instant::now();
    let provisioned = backend.create(&spec).await.expect("create");
    let serial = t0.elapsed().as_nanos() / RTT.as_nanos();
    assert_eq!(
        t0.elapsed(),
        RTT * 3,
        "{serial} round trips one after another: {:?}",
        calls(&fake)
    );
    assert_eq!(fake.calls(), 6, "{:?}", calls(&fake));
    assert_eq!(provisioned.node_port, Some(30_000));
    assert_eq!(provisioned.ssh_host.as_deref(), Some("172.18.0.3"));
    // Readiness came from one watch, opened without a list first.
    let log = fake.log();
    let pods: Vec<_> = log.iter().filter(|s| s.path.ends_with("/pods")).collect();
    assert_eq!(pods.len(), 1, "{:?}", calls(&fake));
    assert!(pods[0].query.contains_key("watch"));
    assert_eq!(pods[0].method, Method::GET);
}

/// With `SSH_HOST` set, no node is read: the same three round trips, five calls.
#[tokio::test(start_paused = true)]
async fn with_ssh_host_a_create_makes_five_calls() {
    let (client, fake) = Fake::start_with_latency(RTT);
    let config = K8sConfig {
        ssh_host: Some("pods.example.org".to_owned()),
        ..K8sConfig::default()
    };
    let backend = on_fake(client, &fake, config);
    let t0 = tokio::time::Instant::now();
    let provisioned = backend.create(&spec_now(&fake, 5)).await.expect("create");
    assert_eq!(t0.elapsed(), RTT * 3, "{:?}", calls(&fake));
    assert_eq!(fake.calls(), 5, "{:?}", calls(&fake));
    assert_eq!(provisioned.ssh_host.as_deref(), Some("pods.example.org"));
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
    assert!(t0.elapsed() <= RTT * 4, "{:?}", calls(&fake));
    assert!(fake.calls() <= 6, "{:?}", calls(&fake));
}
