//! Fuzz target `cashu_token`: see `paygress_fuzz::cashu_token`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    paygress_fuzz::cashu_token(data);
});
