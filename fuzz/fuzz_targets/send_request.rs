//! libFuzzer over `tern_fuzz::send_request`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tern_fuzz::send_request(data));
