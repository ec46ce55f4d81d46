//! Fuzz target `request_json`: see `paygress_fuzz::request_json`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    paygress_fuzz::request_json(data);
});
