use super::host::parse_ipv4_cidrs;
use super::*;

#[test]
fn host_addresses_and_subnets_are_blocked() {
    let text = "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever\n\
                4: eth0    inet 192.0.2.2/24 brd 192.0.2.255 scope global eth0\\  valid_lft forever\n\
                5: wg0    inet 203.0.113.9/32 scope global wg0\n";
    assert_eq!(
        parse_ipv4_cidrs(text),
        vec!["192.0.2.2/32", "192.0.2.0/24", "203.0.113.9/32"]
    );
}

/// Set up ahead of time, spares are what [`Pasta::take`] hands out (each once),
/// replaced in the background, configured like any lease namespace, and deleted by
/// [`Pasta::close`]. Needs root, `pasta` and `ip` (else nothing to test here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spare_namespaces_are_taken_replaced_and_closed() {
    let dir = tempfile::tempdir().unwrap();
    let which = |n: &str| crate::sandbox::which(n);
    let Net::Pasta(p) =
        Net::detect(crate::config::NetworkMode::Isolated, dir.path(), &which).unwrap()
    else {
        assert!(
            !rustix::process::geteuid().is_root() || which("pasta").is_none(),
            "root with pasta must get per-lease namespaces"
        );
        return;
    };
    let ready = async |n: usize| {
        for _ in 0..300 {
            if p.ready().len() >= n {
                return p.ready();
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("no {n} spare namespaces after 6 s: {:?}", p.ready());
    };
    p.prepare(1);
    let spare = ready(1).await.remove(0);
    assert!(p.ns_path(&spare).exists());
    let taken = p.take().await.unwrap();
    assert_eq!(taken, spare, "the spare is handed out");
    let next = ready(1).await.remove(0);
    assert_ne!(next, taken, "and replaced by a new one");
    let routes = std::process::Command::new("ip")
        .args(["-n", &next, "route", "show", "table", "all"])
        .output()
        .unwrap();
    let routes = String::from_utf8_lossy(&routes.stdout);
    assert!(routes.contains("prohibit 10.0.0.0/8"), "{routes}");
    assert!(
        routes.contains("default via 169.254.1.1"),
        "pasta configured it: {routes}"
    );
    p.close();
    assert!(!p.ns_path(&next).exists(), "closing deletes the spares");
    assert!(
        p.ns_path(&taken).exists(),
        "but not the namespaces handed out"
    );
    let after = p.take().await.unwrap();
    assert!(p.ns_path(&after).exists(), "taking still works once closed");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(p.ready().is_empty(), "no spares once closed");
    p.destroy(&taken);
    p.destroy(&after);
    assert!(!p.ns_path(&taken).exists());
}

#[test]
fn namespace_names_are_per_data_directory() {
    assert_ne!(fnv1a(b"/var/lib/a"), fnv1a(b"/var/lib/b"));
    assert_eq!(fnv1a(b""), 0x811c_9dc5);
}
