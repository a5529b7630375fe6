//! libFuzzer over `tern_fuzz::mta_sts_policy`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tern_fuzz::mta_sts_policy(data));
