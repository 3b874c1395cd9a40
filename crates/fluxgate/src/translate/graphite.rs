//! Graphite → InfluxDB translation (InfluxDB 1.x graphite-service templates).
