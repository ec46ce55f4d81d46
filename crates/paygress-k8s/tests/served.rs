//! The fake cluster served on a 127.0.0.1 port (`Fake::serve`, what the benchmarks use):
//! the backend's whole create flow (Job and pod watch, Secret and Service, the paid
//! clock once the pod is Ready) over TCP, on real time, with no hand-moved clock.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::time::Duration;

use paygress_core::PodBackend;
use paygress_core::contract::sample_spec;
use paygress_k8s::fake::Fake;
use paygress_k8s::{K8sBackend, K8sConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_served_fake_runs_a_lease_over_tcp_and_counts_every_call() {
    let served = Fake::serve(Duration::ZERO).await.unwrap();
    assert!(served.url().starts_with("http://127.0.0.1:"));
    assert_eq!(served.calls(), 0);
    let backend = K8sBackend::new(served.client().unwrap(), K8sConfig::default());
    let spec = sample_spec(5);

    let provisioned = backend.create(&spec).await.expect("create over TCP");
    assert!(provisioned.expires_at.is_some(), "{provisioned:?}");
    let fake = served.fake();
    assert_eq!(fake.names("jobs"), vec![spec.id.to_string()]);
    assert_eq!(fake.names("secrets").len(), 1);
    assert_eq!(fake.names("services").len(), 1);
    let pods = fake.names("pods");
    assert_eq!(pods.len(), 1);
    let pod = fake.object("pods", &pods[0]).unwrap();
    assert_eq!(pod["status"]["phase"], "Running");
    // The create's writes after its reply (ownerReferences, the started patch) land in
    // the background; counting before they have would race them.
    backend.shutdown().await;
    // Every request reached the fake and was counted; the pod watch saw the pod Ready
    // (readiness after 0 s, once its Secret existed; no clock moved by hand).
    let log = fake.log();
    assert_eq!(served.calls(), log.len() as u64);
    assert!(
        log.iter()
            .any(|s| s.path.ends_with("/pods") && s.query.contains_key("watch")),
        "the backend watched the lease's pods: {:?}",
        log.iter().map(|s| &s.path).collect::<Vec<_>>()
    );
    assert_eq!(
        log.iter()
            .filter(|s| s.method == http::Method::PATCH)
            .count(),
        3,
        "two ownerReferences and the started patch, all landed: {:?}",
        log.iter().map(|s| (&s.method, &s.path)).collect::<Vec<_>>()
    );

    // The tally counts the same calls by shape.
    let tally = fake.tally();
    assert_eq!(tally.values().sum::<u64>(), served.calls(), "{tally:?}");
    for (call, count) in [
        ("POST jobs", 1),
        ("POST secrets", 1),
        ("POST services", 1),
        ("GET pods watch", 1),
        ("PATCH jobs", 1),
        ("PATCH secrets", 1),
        ("PATCH services", 1),
    ] {
        assert_eq!(tally.get(call), Some(&count), "{call}: {tally:?}");
    }

    backend.delete(&spec.id).await.expect("delete");
    for resource in ["jobs", "pods", "secrets", "services"] {
        assert!(fake.names(resource).is_empty(), "{resource} left");
    }
}

#[tokio::test]
async fn the_in_process_fake_counts_its_calls_too() {
    let (client, fake) = Fake::start();
    let jobs: kube::Api<k8s_openapi::api::batch::v1::Job> =
        kube::Api::namespaced(client, paygress_k8s::fake::NS);
    assert!(jobs.get_opt("no-such-job").await.unwrap().is_none());
    assert_eq!(fake.calls(), 1);
    assert_eq!(fake.log().len(), 1);
}

/// Many requests at once: the client the service builds keeps to
/// [`paygress_k8s::MAX_IN_FLIGHT`] of them in flight, so the connections it opens (and
/// keeps, idle, in its pool) stay near that many; kube's own client opens one per
/// request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_client_opens_about_as_many_connections_as_it_allows_in_flight() {
    const REQUESTS: usize = 300;
    async fn burst(client: kube::Client) {
        let jobs: kube::Api<k8s_openapi::api::batch::v1::Job> =
            kube::Api::namespaced(client, paygress_k8s::fake::NS);
        let gets = (0..REQUESTS).map(|i| {
            let jobs = jobs.clone();
            async move { jobs.get_opt(&format!("job-{i}")).await.unwrap() }
        });
        assert!(
            futures::future::join_all(gets)
                .await
                .iter()
                .all(Option::is_none)
        );
    }
    let limited = Fake::serve(Duration::from_millis(20)).await.unwrap();
    burst(limited.client().unwrap()).await;
    let plain = Fake::serve(Duration::from_millis(20)).await.unwrap();
    burst(kube::Client::try_from(plain.config()).unwrap()).await;
    assert!(
        limited.connections() <= 2 * paygress_k8s::MAX_IN_FLIGHT as u64,
        "{} connections for {} in flight",
        limited.connections(),
        paygress_k8s::MAX_IN_FLIGHT
    );
    // Without the bound (the contrast that shows the test can fail).
    assert!(
        plain.connections() > 2 * paygress_k8s::MAX_IN_FLIGHT as u64,
        "{} connections without a bound",
        plain.connections()
    );
}
