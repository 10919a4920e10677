//! libFuzzer's entry for `fuzz/checks/classify.rs`, where the invariants live (the same
//! checks replay the committed corpus in `tests/fuzz_corpus.rs` on stable).
#![no_main]

#[path = "../checks/classify.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::run(data));
