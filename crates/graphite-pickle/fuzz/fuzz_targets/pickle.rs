//! Decoding never panics, never allocates beyond its caps (run with `-malloc_limit_mb`),
//! and what it decodes re-encodes to the same points. The property itself lives in
//! `tests/common/fuzz_body.rs`, so `cargo test` runs it too.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/common/fuzz_body.rs"]
mod fuzz_body;

fuzz_target!(|data: &[u8]| fuzz_body::check(data));
