//! libFuzzer over `tern_fuzz::config_file`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tern_fuzz::config_file(data));
