//! libFuzzer over `tern_fuzz::search_query`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tern_fuzz::search_query(data));
