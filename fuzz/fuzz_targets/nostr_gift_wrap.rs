//! Fuzz target `nostr_gift_wrap`: see `paygress_fuzz::nostr_gift_wrap`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    paygress_fuzz::nostr_gift_wrap(data);
});
