//! libFuzzer over `tern_fuzz::smtp_command`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tern_fuzz::smtp_command(data));
