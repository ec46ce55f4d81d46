//! Fuzz target `nostr_direct`: see `paygress_fuzz::nostr_direct`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    paygress_fuzz::nostr_direct(data);
});
