//! Diagnostics of the backend on the served fake API (`Fake::serve`, over TCP).
//!
//! - `k8s_probe spawn [N] [LATENCY_MS]`: N creates one after another, each call answered
//!   after LATENCY_MS: p50/max of one create and API calls per create.
//! - `k8s_probe reap [N]`: N live leases and 200 that expire 2 to 5 s after they start,
//!   then reaper passes as core runs them (list; get + delete per due lease, 32 at a
//!   time; sweep), timed piece by piece, with a trivial call every 20 ms measuring how
//!   long the fake takes to answer meanwhile.
//!
//! `cargo run --release -p paygress-k8s --features fake-api --example k8s_probe -- spawn`

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use paygress_core::contract::sample_spec;
use paygress_core::{LeaseState, PodBackend};
use paygress_k8s::fake::{Fake, NS};
use paygress_k8s::{K8sBackend, K8sConfig};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: u64| args.get(i).map_or(default, |a| a.parse().unwrap());
    match args.first().map(String::as_str) {
        Some("spawn") => spawn(arg(1, 50) as usize, Duration::from_millis(arg(2, 25))).await,
        Some("reap") => reap(arg(1, 2000) as usize).await,
        _ => eprintln!("usage: k8s_probe spawn [N] [LATENCY_MS] | reap [N]"),
    }
}

async fn spawn(n: usize, latency: Duration) {
    let served = Fake::serve(latency).await.unwrap();
    let backend = K8sBackend::new(served.client().unwrap(), K8sConfig::default());
    let before = served.calls();
    let mut times = Vec::new();
    for _ in 0..n {
        let t = Instant::now();
        backend.create(&sample_spec(60)).await.unwrap();
        times.push(t.elapsed());
    }
    times.sort();
    println!(
        "{n} creates at {latency:?} per call: p50 {:?}, p90 {:?}, max {:?}; {:.2} API calls per create",
        times[n / 2],
        times[n * 9 / 10],
        times[n - 1],
        (served.calls() - before) as f64 / n as f64
    );
}

async fn reap(n: usize) {
    let served = Fake::serve(Duration::ZERO).await.unwrap();
    let client = served.client().unwrap();
    let backend = Arc::new(K8sBackend::new(client.clone(), K8sConfig::default()));
    let t = Instant::now();
    futures::stream::iter(0..n)
        .map(|_| {
            let b = backend.clone();
            async move { b.create(&sample_spec(60)).await.unwrap() }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await;
    println!("created {n} in {:?}", t.elapsed());
    let short: Vec<_> = (0..200)
        .map(|i| {
            let mut s = sample_spec(1);
            s.expires_at = s.created_at + jiff::SignedDuration::from_secs(2 + (i % 4));
            s
        })
        .collect();
    let t = Instant::now();
    futures::stream::iter(short.clone())
        .map(|s| {
            let b = backend.clone();
            async move { b.create(&s).await.unwrap() }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await;
    println!("created 200 short in {:?}", t.elapsed());
    // The probe: a GET of a missing Job every 20 ms.
    let probe_client = client.clone();
    let probe = tokio::spawn(async move {
        let jobs: kube::Api<Job> = kube::Api::namespaced(probe_client, NS);
        let mut worst = Duration::ZERO;
        let mut all = Vec::new();
        loop {
            let t = Instant::now();
            let _ = jobs.get_opt("no-such-job").await;
            let d = t.elapsed();
            worst = worst.max(d);
            all.push(d);
            if all.len() % 50 == 0 {
                all.sort();
                println!(
                    "  probe: p50 {:?} max {:?} (last 50)",
                    all[all.len() / 2],
                    worst
                );
                all.clear();
                worst = Duration::ZERO;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let mut removed_total = 0;
    for pass in 0..12 {
        let t = Instant::now();
        let records = backend.list().await.unwrap();
        let list = t.elapsed();
        let now = jiff::Timestamp::now();
        let due: Vec<_> = records
            .iter()
            .filter(|r| r.state_at(now) == LeaseState::Expired)
            .map(|r| r.id.clone())
            .collect();
        let lateness: Vec<i64> = records
            .iter()
            .filter(|r| r.state_at(now) == LeaseState::Expired)
            .map(|r| (now - r.expires_at).get_milliseconds())
            .collect();
        let t2 = Instant::now();
        let get_times = Arc::new(std::sync::Mutex::new(Vec::new()));
        let del_times = Arc::new(std::sync::Mutex::new(Vec::new()));
        let removed = futures::stream::iter(due.clone())
            .map(|id| {
                let b = backend.clone();
                let (g, d) = (get_times.clone(), del_times.clone());
                async move {
                    let t = Instant::now();
                    let r = b.get(&id).await.unwrap();
                    g.lock().unwrap().push(t.elapsed());
                    if r.is_some_and(|r| r.state_at(now) == LeaseState::Expired) {
                        let t = Instant::now();
                        b.delete(&id).await.unwrap();
                        d.lock().unwrap().push(t.elapsed());
                        1
                    } else {
                        0
                    }
                }
            })
            .buffer_unordered(32)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .sum::<usize>();
        let reap = t2.elapsed();
        let t3 = Instant::now();
        let swept = backend.sweep().await.unwrap();
        let sweep = t3.elapsed();
        removed_total += removed;
        let mut g = get_times.lock().unwrap().clone();
        let mut d = del_times.lock().unwrap().clone();
        g.sort();
        d.sort();
        println!(
            "pass {pass}: {} records, list {list:?}, due {} (late max {:?} ms), get+delete {reap:?} (get p50 {:?} max {:?}; delete p50 {:?} max {:?}), sweep {sweep:?} ({swept}), total {:?}",
            records.len(),
            due.len(),
            lateness.iter().max(),
            g.get(g.len() / 2),
            g.last(),
            d.get(d.len() / 2),
            d.last(),
            t.elapsed()
        );
        if removed_total >= 200 && pass > 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    probe.abort();
    println!("calls: {}", served.calls());
}
