//! Splitter, line parser, tagged-series validation and encoder on arbitrary bytes: never a
//! panic, reads of any size agree, and whatever parses round-trips. The property itself lives
//! in `../property.rs`, shared with the crate's tests.

#![no_main]

#[path = "../property.rs"]
mod property;

libfuzzer_sys::fuzz_target!(|data: &[u8]| property::check(data));
