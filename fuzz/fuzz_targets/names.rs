//! Fuzz target `names`: see `paygress_fuzz::names`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    paygress_fuzz::names(data);
});
