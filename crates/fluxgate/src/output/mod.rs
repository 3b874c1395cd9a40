//! Where points go: batching, queueing and delivery to upstreams.

pub mod influxdb;
