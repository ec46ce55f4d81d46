//! Fuzz target `http_request`: see `paygress_fuzz::http_request`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    paygress_fuzz::http_request(data);
});
