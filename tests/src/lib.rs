//! End-to-end test support: real servers on free loopback ports.
//!
//! fluxgate's end-to-end tests talk to the servers people actually run, not to mocks: InfluxDB
//! 1.x (`influxd`), carbon-cache and carbon-relay (Debian `graphite-carbon`), carbon-c-relay,
//! and the Python client libraries (`aioinflux`, `influxdb`, `influxdb-client`, `aiographite`)
//! from the project virtualenv. Every fixture here starts its server in its own temporary
//! directory on ports nobody else was given, waits until it is ready, and kills it when
//! dropped, so tests run in parallel and leave nothing behind.
//!
//! A missing server is a test failure whose message says how to install it (usually: run
//! `scripts/install-test-deps.sh`), never a silent skip.
//!
//! When a wait times out, the panic message carries the last lines of the server's log. When a
//! test fails for any reason, each fixture dropped during the unwind prints its log tail and
//! keeps its temporary directory, whose path it prints.
//!
//! Everything is blocking (std threads and sockets): tests are plain `#[test]` functions, and
//! async code under test can still call these from `spawn_blocking`.
//!
//! ```no_run
//! use std::time::Duration;
//! use fluxgate_e2e::{free_port, loopback, send_lines, Gateway, InfluxDb};
//!
//! let influx = InfluxDb::start();
//! influx.create_database("graphite");
//! let (http, plaintext) = (loopback(free_port()), loopback(free_port()));
//! let config = format!(
//!     "[listeners.plaintext]\ntcp = \"{plaintext}\"\n\
//!      [listeners.http]\naddress = \"{http}\"\n\
//!      [[outputs.influxdb]]\nname = \"influx\"\nurl = \"{}\"\ndatabase = \"graphite\"\n",
//!     influx.url()
//! );
//! let gateway = Gateway::start(&config, http);
//! send_lines(plaintext, ["servers.web01.cpu 0.5 1700000000"]);
//! let points = influx.wait_for_points("graphite", 1, Duration::from_secs(10));
//! assert_eq!(points[0].measurement, "servers.web01.cpu");
//! assert_eq!(gateway.metric("fluxgate_received_total", &[]), Some(1.0));
//! ```

pub mod c_relay;
pub mod carbon;
pub mod gateway;
pub mod http;
pub mod influx_v2;
pub mod influxdb;
pub mod nats;
pub mod net;
pub mod pickle;
mod process;
pub mod python;
pub mod victoria;
pub mod wait;

use std::path::{Path, PathBuf};

pub use c_relay::{
    carbon_c_relay_cluster, carbon_c_relay_placement, carbon_c_relay_test_mode, parse_placement,
    CarbonCRelay, CarbonCRelayBuilder,
};
pub use carbon::{
    unix_now, CarbonAggregator, CarbonAggregatorBuilder, CarbonCache, CarbonCacheBuilder,
    CarbonRelay, CarbonRelayBuilder, RelayMethod, Stored,
};
pub use gateway::{
    fluxgate_bin, fluxgate_command, prometheus_value, run_fluxgate, Gateway, GatewayBuilder,
};
pub use http::{
    curl_request, form_urlencode, gzip, http_get, http_post, http_request, HttpResponse,
};
pub use influx_v2::{rfc3339_nanos, InfluxV2Mock, Received, Reply, StoredPoint};
pub use influxdb::{GraphiteService, InfluxDb, InfluxDbBuilder, Point};
pub use nats::{NatsCluster, NatsServer};
pub use net::{
    connect_sender, finish_sender, free_port, free_udp_port, loopback, send_lines, send_tcp,
    send_udp, tcp_is_listening, wait_for_tcp, TcpCapture,
};
pub use pickle::{decode_pickle_body, decode_pickle_frames, pickle_frame, PickledPoint};
pub use process::{require_binary, run_command, tail_file};
pub use python::{run_python, system_python, Python};
pub use victoria::{Series, VictoriaMetrics};
pub use wait::{eventually, metric, wait_metric};

/// The workspace root (the directory of the root Cargo.toml), where `.venv` and `target` live.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives inside the workspace")
        .to_owned()
}

/// `<workspace>/.venv`, the virtualenv scripts/install-test-deps.sh creates.
pub fn venv_dir() -> PathBuf {
    workspace_root().join(".venv")
}
