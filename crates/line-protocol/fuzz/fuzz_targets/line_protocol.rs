//! Parsing never panics; every accepted point that can be written reads back the same and is
//! written again identically; the codec frames bodies as the parser splits them. The property
//! itself lives in the crate (`line_protocol::fuzzing`) so `cargo test` runs it too.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    line_protocol::fuzzing::parse_write_parse(data);
});
