//! fluxgate: a Graphite/InfluxDB protocol gateway.
//!
//! Listeners parse what they read into batches, translation turns Graphite samples into
//! InfluxDB points (and back), and outputs batch, queue and deliver them with retries.

pub mod translate;
