//! The contract every [`Journal`] meets, as plain async functions, one test per check
//! through [`journal_tests!`](crate::journal_tests).
//!
//! Core's [`MemoryJournal`](crate::memory::MemoryJournal) and the file journal of
//! `paygress-store` are held to the same behaviour; what only a durable journal can
//! promise (surviving a reopen, torn lines, fsync order) stays in that crate's tests.

use jiff::{SignedDuration, Timestamp};

use crate::lease::Requester;
use crate::money::{Amount, MintUrl};
use crate::ports::{Entry, Journal, Purpose, Redeemed, RequestKey, Stage};
use crate::protocol::Reply;

/// One `#[tokio::test]` per journal contract check, each on a fresh journal from
/// `$make`: an async function taking the check's number and returning
/// `(journal, guard)`, the guard kept alive for the check (a temporary directory, or
/// `()`).
///
/// ```rust,ignore
/// async fn fresh(_n: u16) -> (MemoryJournal, ()) {
///     (MemoryJournal::default(), ())
/// }
/// paygress_core::journal_tests!(fresh);
/// ```
#[macro_export]
macro_rules! journal_tests {
    ($make:path) => {
        $crate::journal_tests!(@one $make, 0, journal_contract_unknown_key_reads_none, unknown_key_reads_none);
        $crate::journal_tests!(@one $make, 1, journal_contract_put_replaces_the_latest_entry, put_replaces_the_latest_entry);
        $crate::journal_tests!(@one $make, 2, journal_contract_unfinished_lists_exactly_the_open_keys, unfinished_lists_exactly_the_open_keys);
        $crate::journal_tests!(@one $make, 3, journal_contract_prune_forgets_only_old_finished_entries, prune_forgets_only_old_finished_entries);
        $crate::journal_tests!(@one $make, 4, journal_contract_concurrent_puts_all_land, concurrent_puts_all_land);
        $crate::journal_tests!(@one $make, 5, journal_contract_a_lazy_put_lands_before_any_later_put, a_lazy_put_lands_before_any_later_put);
    };
    (@one $make:path, $n:literal, $name:ident, $check:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let (journal, _guard) = $make($n).await;
            $crate::contract::journal::$check(&journal).await;
        }
    };
}

fn at(second: i64) -> Timestamp {
    Timestamp::UNIX_EPOCH + SignedDuration::from_secs(1_700_000_000 + second)
}

fn key(n: usize) -> RequestKey {
    RequestKey::new("contract", &format!("request-{n}"))
}

fn paid(second: i64) -> Entry {
    Entry::new(
        Requester::new("contract", "buyer"),
        at(second),
        Stage::Paid {
            purpose: Purpose::Spawn,
            lease: "ssh-pod-abcd1234".parse().expect("a lease id"),
            payment: Redeemed {
                mint: MintUrl::new("http://127.0.0.1:3338"),
                amount: Amount::sat(21),
            },
        },
    )
}

fn done(second: i64, message: &str) -> Entry {
    Entry::new(
        Requester::new("contract", "buyer"),
        at(second),
        Stage::Done {
            reply: Reply::error(crate::protocol::ErrorCode::Internal, message),
        },
    )
}

/// A key never written reads as `None`.
pub async fn unknown_key_reads_none(journal: &dyn Journal) {
    assert_eq!(journal.get(&key(0)).await.expect("get"), None);
    assert!(journal.unfinished().await.expect("unfinished").is_empty());
}

/// `get` answers the entry last `put` for the key, whole.
pub async fn put_replaces_the_latest_entry(journal: &dyn Journal) {
    let first = paid(1);
    journal.put(&key(1), &first).await.expect("put");
    assert_eq!(journal.get(&key(1)).await.expect("get"), Some(first));
    let second = done(2, "finished");
    journal.put(&key(1), &second).await.expect("put");
    assert_eq!(journal.get(&key(1)).await.expect("get"), Some(second));
    assert_eq!(journal.get(&key(2)).await.expect("get"), None);
}

/// `unfinished` lists every key whose latest stage is not `Done`, and no other.
pub async fn unfinished_lists_exactly_the_open_keys(journal: &dyn Journal) {
    journal.put(&key(1), &paid(1)).await.expect("put");
    journal.put(&key(2), &paid(2)).await.expect("put");
    journal.put(&key(3), &done(3, "three")).await.expect("put");
    journal.put(&key(2), &done(4, "two")).await.expect("put");
    let mut open = journal.unfinished().await.expect("unfinished");
    open.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
    assert_eq!(open, vec![(key(1), paid(1))]);
}

/// `prune(before)` forgets `Done` entries recorded before `before`, counts them, and
/// never forgets an unfinished entry however old.
pub async fn prune_forgets_only_old_finished_entries(journal: &dyn Journal) {
    journal.put(&key(1), &done(10, "old")).await.expect("put");
    journal.put(&key(2), &done(30, "new")).await.expect("put");
    journal.put(&key(3), &paid(5)).await.expect("put");
    assert_eq!(journal.prune(at(20)).await.expect("prune"), 1);
    assert_eq!(journal.get(&key(1)).await.expect("get"), None);
    assert_eq!(
        journal.get(&key(2)).await.expect("get"),
        Some(done(30, "new"))
    );
    assert_eq!(journal.get(&key(3)).await.expect("get"), Some(paid(5)));
    assert_eq!(journal.prune(at(20)).await.expect("prune"), 0);
}

/// Puts made at the same time (the service journals many requests at once) all land:
/// each key reads back its own entry.
pub async fn concurrent_puts_all_land(journal: &dyn Journal) {
    const N: usize = 32;
    let puts = (0..N).map(|n| async move {
        let entry = done(n as i64, &format!("reply {n}"));
        journal.put(&key(n), &entry).await.expect("put");
    });
    futures::future::join_all(puts).await;
    for n in 0..N {
        assert_eq!(
            journal.get(&key(n)).await.expect("get"),
            Some(done(n as i64, &format!("reply {n}"))),
            "key {n}"
        );
    }
}

/// A `put_lazy` lands in call order: once a later `put` (of any key) returns, the lazy
/// entry reads back, and a later `put` of the same key replaces it (never the reverse).
pub async fn a_lazy_put_lands_before_any_later_put(journal: &dyn Journal) {
    journal.put_lazy(&key(1), &paid(1)).await.expect("put_lazy");
    journal.put(&key(2), &done(2, "other")).await.expect("put");
    assert_eq!(journal.get(&key(1)).await.expect("get"), Some(paid(1)));

    journal.put_lazy(&key(3), &paid(3)).await.expect("put_lazy");
    journal
        .put(&key(3), &done(4, "finished"))
        .await
        .expect("put");
    assert_eq!(
        journal.get(&key(3)).await.expect("get"),
        Some(done(4, "finished"))
    );
    let open = journal.unfinished().await.expect("unfinished");
    assert_eq!(open, vec![(key(1), paid(1))]);
}
