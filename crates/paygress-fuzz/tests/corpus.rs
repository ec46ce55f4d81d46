//! Replays the fuzz corpus (`fuzz/corpus/<target>/*`) through the targets' bodies: every
//! input the fuzzers kept, and every input that once crashed one, runs in every
//! `cargo test`, without the fuzz toolchain.

use std::path::PathBuf;

fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target)
}

fn replay(target: &str) {
    let (_, body) = paygress_fuzz::TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .expect("a known target");
    let dir = corpus_dir(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} is empty", dir.display());
    let mut accepted = 0;
    for file in &files {
        let data = std::fs::read(file).expect("a corpus file");
        match std::panic::catch_unwind(|| body(&data)) {
            Ok(true) => accepted += 1,
            Ok(false) => {}
            Err(_) => panic!("{target} panicked on {}", file.display()),
        }
    }
    eprintln!("{target}: {accepted} of {} inputs accepted", files.len());
    // The corpus must keep inputs that get past parsing, or the fuzzer starts shallow.
    assert!(
        accepted > 0,
        "no input of {} is accepted all the way",
        dir.display()
    );
}

#[test]
fn names() {
    replay("names");
}

#[test]
fn request_json() {
    replay("request_json");
}

#[test]
fn nostr_direct() {
    replay("nostr_direct");
}

#[test]
fn nostr_gift_wrap() {
    replay("nostr_gift_wrap");
}

#[test]
fn cashu_token() {
    replay("cashu_token");
}

#[test]
fn http_request() {
    replay("http_request");
}

#[test]
fn every_target_has_a_test() {
    let names: Vec<&str> = paygress_fuzz::TARGETS.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        names,
        [
            "names",
            "request_json",
            "nostr_direct",
            "nostr_gift_wrap",
            "cashu_token",
            "http_request"
        ]
    );
}
