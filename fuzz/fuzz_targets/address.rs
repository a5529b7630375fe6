//! libFuzzer over `tern_fuzz::address`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tern_fuzz::address(data));
