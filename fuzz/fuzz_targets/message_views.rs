//! libFuzzer over `tern_fuzz::message_views`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tern_fuzz::message_views(data));
