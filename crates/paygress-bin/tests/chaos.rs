//! The short chaos run CI does: 100 paid requests against the real `paygress` binary,
//! killed at random instants and at failpoints, with a mint that loses answers.
#![cfg(feature = "chaos")]

use paygress_bin::chaos::{ChaosOptions, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_requests_lose_nothing() {
    let mut opts = ChaosOptions::new(100, 7, env!("CARGO_BIN_EXE_paygress").into());
    opts.port_base = 32000;
    let report = run(&opts).await.expect("chaos run");
    println!("{}", report.table());
    assert!(report.ok(), "{}", report.table());
    assert!(report.leases > 0);
    assert!(report.starts > 1, "the service was restarted");
}
