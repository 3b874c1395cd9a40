//! Load generator and counting sinks for fluxgate's end-to-end benchmarks.
//!
//! The binaries (`fg-loadgen`, `fg-sink`) are thin I/O shells; what decides whether a
//! benchmark is trustworthy lives here so it can be tested: the traffic is deterministic
//! (same flags, same bytes, run after run) and the sink's point count follows the same rules
//! InfluxDB uses to decide what is a point, across any split of the stream into reads.

pub mod corpus;
pub mod count;
pub mod sys;
