#![no_main]

// The body lives in tests/fuzz-harness, so the stable suite replays this target's corpus.
libfuzzer_sys::fuzz_target!(|data: &[u8]| caidan_fuzz_harness::http_bodies(data));
