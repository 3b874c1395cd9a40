//! Translation between the Graphite and InfluxDB data models.

pub mod graphite;
pub mod influx;
