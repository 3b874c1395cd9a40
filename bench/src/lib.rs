//! Load generator and sinks for the benchmarks.
