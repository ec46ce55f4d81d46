//! The file journal keeps what the service needs across restarts.

use std::io::Write;

use paygress_core::{
    Amount, ErrorCode, Journal, MintUrl, Purpose, Redeemed, Reply, RequestKey, Stage,
};
use paygress_store::FileJournal;

fn done(msg: &str) -> Stage {
    Stage::Done {
        reply: Reply::error(ErrorCode::PodNotFound, msg),
    }
}

fn paid() -> Stage {
    Stage::Paid {
        purpose: Purpose::Spawn,
        lease: "ssh-pod-abcd1234".parse().expect("valid lease id"),
        payment: Redeemed {
            mint: MintUrl::new("http://127.0.0.1:1"),
            amount: Amount::sat(5),
        },
    }
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
