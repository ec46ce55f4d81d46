//! The file journal keeps what the service needs across restarts.

use std::io::Write;

use jiff::Timestamp;
use paygress_core::{
    Amount, Entry, ErrorCode, Journal, MintUrl, Purpose, Redeemed, Reply, RequestKey, Requester,
    Stage,
};
use paygress_store::FileJournal;

fn at(second: i64) -> Timestamp {
    Timestamp::from_second(second).expect("timestamp")
}

fn entry(stage: Stage) -> Entry {
    Entry::new(Requester::new("t", "buyer"), at(1_000), stage)
}

fn done(msg: &str) -> Entry {
    entry(Stage::Done {
        reply: Reply::error(ErrorCode::PodNotFound, msg),
    })
}

fn paid() -> Entry {
    entry(Stage::Paid {
        purpose: Purpose::Spawn,
        lease: "ssh-pod-abcd1234".parse().expect("valid lease id"),
        payment: Redeemed {
            mint: MintUrl::new("http://127.0.0.1:1"),
            amount: Amount::sat(5),
        },
    })
}

#[tokio::test]
async fn survives_reopen_and_reports_unfinished() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/journal.jsonl");
    let a = RequestKey::new("t", "a");
    let b = RequestKey::new("t", "b");
    {
        let j = FileJournal::open(&path).unwrap();
        j.put(&a, &paid()).await.unwrap();
        j.put(&a, &done("first")).await.unwrap();
        j.put(&b, &paid()).await.unwrap();
    }
    let j = FileJournal::open(&path).unwrap();
    assert_eq!(j.get(&a).await.unwrap(), Some(done("first")));
    assert_eq!(j.get(&b).await.unwrap(), Some(paid()));
    let unfinished = j.unfinished().await.unwrap();
    assert_eq!(unfinished, vec![(b, paid())]);
}

/// `unfinished` follows every move: done leaves it, a finished request retried (a refusal
/// before payment is not final) comes back, a prune never touches it.
#[tokio::test]
async fn unfinished_follows_entries_both_ways_and_through_prune() {
    let dir = tempfile::tempdir().unwrap();
    let j = FileJournal::open(dir.path().join("journal.jsonl")).unwrap();
    let keys: Vec<RequestKey> = (0..50)
        .map(|i| RequestKey::new("t", &format!("k{i}")))
        .collect();
    for k in &keys {
        j.put(k, &paid()).await.unwrap();
    }
    for k in &keys[..45] {
        j.put(k, &done("d")).await.unwrap();
    }
    let mut open: Vec<RequestKey> = j
        .unfinished()
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.0)
        .collect();
    open.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    let mut want = keys[45..].to_vec();
    want.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    assert_eq!(open, want);
    // Retried after a refusal: open again.
    j.put(&keys[0], &paid()).await.unwrap();
    assert!(
        j.unfinished()
            .await
            .unwrap()
            .contains(&(keys[0].clone(), paid()))
    );
    // Pruning removes finished entries only.
    let far = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24 * 365);
    assert_eq!(j.prune(far).await.unwrap(), 44);
    assert_eq!(j.unfinished().await.unwrap().len(), 6);
    assert_eq!(j.len(), 6);
}

#[cfg(unix)]
#[tokio::test]
async fn file_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fresh/journal.jsonl");
    let j = FileJournal::open(&path).unwrap();
    j.put(&RequestKey::new("t", "a"), &done("x")).await.unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    // A directory the journal creates is private too.
    let mode = std::fs::metadata(dir.path().join("fresh"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
}

#[tokio::test]
async fn torn_last_line_is_ignored_but_corruption_elsewhere_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.jsonl");
    {
        let j = FileJournal::open(&path).unwrap();
        j.put(&RequestKey::new("t", "a"), &done("x")).await.unwrap();
    }
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(b"{\"key\":\"t:b\",\"sta")
        .unwrap();
    let j = FileJournal::open(&path).unwrap();
    assert_eq!(j.len(), 1);
    // The torn tail was dropped at open, so new lines start clean.
    j.put(&RequestKey::new("t", "c"), &done("y")).await.unwrap();
    drop(j);
    assert_eq!(FileJournal::open(&path).unwrap().len(), 2);

    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, "garbage\n{}\n").unwrap();
    assert!(FileJournal::open(&bad).is_err());
}

#[tokio::test]
async fn compaction_keeps_latest_stage() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.jsonl");
    let j = FileJournal::open(&path).unwrap();
    let key = RequestKey::new("t", "hot");
    for i in 0..1100 {
        j.put(&key, &done(&i.to_string())).await.unwrap();
    }
    drop(j);
    let lines = std::fs::read_to_string(&path).unwrap().lines().count();
    assert!(lines < 1100, "file was compacted ({lines} lines)");
    let j = FileJournal::open(&path).unwrap();
    assert_eq!(j.get(&key).await.unwrap(), Some(done("1099")));
}

#[tokio::test]
async fn prune_forgets_old_finished_entries_only_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.jsonl");
    let (old, new, open) = (
        RequestKey::new("t", "old"),
        RequestKey::new("t", "new"),
        RequestKey::new("t", "open"),
    );
    {
        let j = FileJournal::open(&path).unwrap();
        j.put(&old, &done("old")).await.unwrap();
        let mut fresh = done("new");
        fresh.updated_at = at(5_000);
        j.put(&new, &fresh).await.unwrap();
        j.put(&open, &paid()).await.unwrap();
        assert_eq!(j.prune(at(2_000)).await.unwrap(), 1);
        assert_eq!(j.prune(at(2_000)).await.unwrap(), 0);
    }
    let j = FileJournal::open(&path).unwrap();
    assert_eq!(j.get(&old).await.unwrap(), None);
    assert!(j.get(&new).await.unwrap().is_some());
    assert_eq!(
        j.get(&open).await.unwrap(),
        Some(paid()),
        "unfinished is kept"
    );
}

#[tokio::test]
async fn lines_without_a_requester_read_as_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.jsonl");
    std::fs::write(
        &path,
        r#"{"key":"t:a","stage":"done","reply":{"type":"error","code":"pod_not_found","message":"x"}}
"#,
    )
    .unwrap();
    let j = FileJournal::open(&path).unwrap();
    let e = j.get(&RequestKey::new("t", "a")).await.unwrap().unwrap();
    assert_eq!(e.requester, Requester::unknown());
}

/// The last line the file holds for `key`, read straight from disk.
fn last_line_on_disk(path: &std::path::Path, key: &RequestKey) -> Option<Entry> {
    #[derive(serde::Deserialize)]
    struct Line {
        key: RequestKey,
        #[serde(flatten)]
        entry: Entry,
    }
    std::fs::read_to_string(path)
        .expect("journal file")
        .lines()
        .filter_map(|l| serde_json::from_str::<Line>(l).ok())
        .filter(|l| l.key == *key)
        .map(|l| l.entry)
        .next_back()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_puts_share_fsyncs_are_durable_when_they_return_and_keep_order() {
    const TASKS: usize = 64;
    const STAGES: usize = 10;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.jsonl");
    let j = FileJournal::open(&path).unwrap();
    let syncs_at_open = j.syncs();
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..TASKS {
        let (j, path) = (j.clone(), path.clone());
        tasks.spawn(async move {
            let key = RequestKey::new("t", &format!("k{t}"));
            // Each request moves through its stages in order, as the service does.
            j.put(&key, &paid()).await.unwrap();
            for s in 0..STAGES {
                j.put(&key, &done(&format!("{t}-{s}"))).await.unwrap();
                // Returned means on disk: the file's latest line for the key is this one
                // (unless a compaction since rewrote it, which keeps the latest too).
                assert_eq!(
                    last_line_on_disk(&path, &key),
                    Some(done(&format!("{t}-{s}")))
                );
                assert_eq!(j.get(&key).await.unwrap(), Some(done(&format!("{t}-{s}"))));
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    let puts = (TASKS * (STAGES + 1)) as u64;
    let syncs = j.syncs() - syncs_at_open;
    // Each put above waits for its own fsync; how many they shared depends on how the
    // tasks were scheduled (on a loaded machine, little): only "never more than one per
    // put" holds. The sharing itself is checked by the next test.
    assert!(
        syncs <= puts,
        "{syncs} fsyncs for {puts} puts: more than one fsync per put"
    );
    // Crash-shaped: no orderly shutdown of the writer (the handle is leaked, as a
    // killed process would leave it); a fresh open sees every request's last stage.
    std::mem::forget(j);
    let j = FileJournal::open(&path).unwrap();
    assert_eq!(j.len(), TASKS);
    for t in 0..TASKS {
        let key = RequestKey::new("t", &format!("k{t}"));
        assert_eq!(
            j.get(&key).await.unwrap(),
            Some(done(&format!("{t}-{}", STAGES - 1)))
        );
    }
    assert!(j.unfinished().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_concurrent_puts_shares_fsyncs() {
    const TASKS: usize = 64;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.jsonl");
    let j = FileJournal::open(&path).unwrap();
    let syncs_at_open = j.syncs();
    // All puts are released at once, and nothing else runs between them: while the
    // writer's first fsync is in flight the others queue behind it and share the next.
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(TASKS));
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..TASKS {
        let (j, start) = (j.clone(), start.clone());
        tasks.spawn(async move {
            start.wait().await;
            j.put(&RequestKey::new("t", &format!("k{t}")), &paid())
                .await
                .unwrap();
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    let syncs = j.syncs() - syncs_at_open;
    assert!(
        syncs <= (TASKS / 4) as u64,
        "concurrent puts share fsyncs: {syncs} fsyncs for {TASKS} puts"
    );
    assert_eq!(FileJournal::open(&path).unwrap().len(), TASKS);
}

#[tokio::test]
async fn lazy_puts_reach_the_disk_unwaited_and_before_later_puts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.jsonl");
    let j = FileJournal::open(&path).unwrap();
    let (lone, first, then) = (
        RequestKey::new("t", "lone"),
        RequestKey::new("t", "first"),
        RequestKey::new("t", "then"),
    );
    let syncs_at_open = j.syncs();
    // Alone, nobody waits for it: the writer writes it out without an fsync of its own.
    j.put_lazy(&lone, &paid()).await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while last_line_on_disk(&path, &lone).is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "a lazy put never written"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(j.syncs(), syncs_at_open, "a lazy line costs no fsync");
    // Followed by a put: durable when that put returns (its fsync covers the whole
    // file), in order.
    j.put_lazy(&first, &paid()).await.unwrap();
    j.put(&then, &done("after")).await.unwrap();
    assert_eq!(last_line_on_disk(&path, &first), Some(paid()));
    assert!(j.syncs() > syncs_at_open);
    std::mem::forget(j);
    let j = FileJournal::open(&path).unwrap();
    assert_eq!(j.get(&lone).await.unwrap(), Some(paid()));
    assert_eq!(j.get(&first).await.unwrap(), Some(paid()));
    assert_eq!(j.get(&then).await.unwrap(), Some(done("after")));
}

/// The journal contract core holds every journal to, one test per check.
mod contract {
    use paygress_store::FileJournal;

    async fn fresh(_check: u16) -> (FileJournal, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let journal = FileJournal::open(dir.path().join("journal.jsonl")).expect("open");
        (journal, dir)
    }

    paygress_core::journal_tests!(fresh);
}

#[tokio::test]
async fn write_time_counts_the_writers_appends_and_only_grows() {
    let dir = tempfile::tempdir().unwrap();
    let j = FileJournal::open(dir.path().join("journal.jsonl")).unwrap();
    let at_open = j.write_time();
    let key = RequestKey::new("t", "k");
    j.put(&key, &paid()).await.unwrap();
    let one = j.write_time();
    assert!(
        one > at_open,
        "a put's append and fsync took no time: {one:?}"
    );
    // Reads never touch the file.
    j.get(&key).await.unwrap();
    assert_eq!(j.write_time(), one);
    j.put(&key, &done("x")).await.unwrap();
    assert!(j.write_time() > one);
}
