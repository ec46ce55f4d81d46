#![doc = include_str!("../README.md")]

pub mod cashu;
mod http;
mod names;
pub mod nostr;
mod request;

pub use cashu::cashu_token;
pub use http::http_request;
pub use names::names;
pub use nostr::{nostr_direct, nostr_gift_wrap};
pub use request::request_json;

/// One fuzz target: its name (the directory under `fuzz/corpus/`) and its body. A body
/// returns whether the input was accepted all the way (a request parsed, a token
/// accepted, a `2xx` answer), so that the corpus test can check the corpus reaches deep
/// code; it panics only on a bug.
pub type Target = (&'static str, fn(&[u8]) -> bool);

/// Every target, by name.
pub const TARGETS: &[Target] = &[
    ("names", names),
    ("request_json", request_json),
    ("nostr_direct", nostr_direct),
    ("nostr_gift_wrap", nostr_gift_wrap),
    ("cashu_token", cashu_token),
    ("http_request", http_request),
];

/// A single-threaded runtime reused by every call on this thread (the fuzzer calls a
/// target millions of times; building a runtime each time would dominate).
pub(crate) fn block_on<F: std::future::Future>(f: F) -> F::Output {
    thread_local! {
        static RT: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread runtime builds");
    }
    RT.with(|rt| rt.block_on(f))
}
