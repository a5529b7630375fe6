//! libFuzzer over `tern_fuzz::pop3_command`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tern_fuzz::pop3_command(data));
