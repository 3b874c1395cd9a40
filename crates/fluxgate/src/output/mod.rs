//! Where points go: batching, queueing and delivery to upstreams.

pub mod graphite;
pub mod influxdb;
