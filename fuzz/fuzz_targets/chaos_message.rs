//! libFuzzer over `tern_fuzz::chaos_message`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tern_fuzz::chaos_message(data));
