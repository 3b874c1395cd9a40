//! Real NATS servers with JetStream (Debian's `nats-server`): one on its own, or three with
//! cluster routes for replicated streams, each in its own temporary directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::http::http_get;
use crate::net::{free_port, loopback, tcp_is_listening};
use crate::process::{self, require_binary, ServerProcess};

/// JetStream recovers its store and (in a cluster) elects a meta leader before it is ready.
const STARTUP: Duration = Duration::from_secs(30);

/// One `nats-server -js` process.
#[derive(Debug)]
pub struct NatsServer {
    dir: Option<tempfile::TempDir>,
    root: PathBuf,
    client_port: u16,
    monitor_port: u16,
    process: ServerProcess,
}

impl NatsServer {
    /// A single server with JetStream, on free loopback ports.
    ///
    /// # Panics
    /// When nats-server is not installed or does not come up.
    pub fn start() -> NatsServer {
        Self::start_with("")
    }

    /// A single server with `extra` added to its configuration file (an `authorization`
    /// block, say).
    pub fn start_with(extra: &str) -> NatsServer {
        let mut s = Self::prepare("nats", free_port(), None);
        let conf = s.root.join("nats.conf");
        let mut text = std::fs::read_to_string(&conf).expect("written");
        text.push_str(extra);
        process::write_file(&conf, &text);
        s.launch();
        s
    }

    fn prepare(name: &str, client_port: u16, cluster: Option<(u16, &[u16])>) -> NatsServer {
        let program = require_binary("nats-server", "nats-server");
        let dir = process::temp_dir(name);
        let root = dir.path().to_owned();
        let monitor_port = free_port();
        let store = root.join("jetstream");
        let mut conf = format!(
            "server_name: {name}\nlisten: 127.0.0.1:{client_port}\nhttp: 127.0.0.1:{monitor_port}\n\
             jetstream {{\n  store_dir: \"{}\"\n  max_memory_store: 268435456\n  max_file_store: 4294967296\n}}\n",
            store.display()
        );
        if let Some((cluster_port, routes)) = cluster {
            let routes: Vec<String> = routes
                .iter()
                .filter(|p| **p != cluster_port)
                .map(|p| format!("nats-route://127.0.0.1:{p}"))
                .collect();
            conf.push_str(&format!(
                "cluster {{\n  name: fluxgate-test\n  listen: 127.0.0.1:{cluster_port}\n  routes: [{}]\n}}\n",
                routes.join(", ")
            ));
        }
        let conf_path = root.join("nats.conf");
        process::write_file(&conf_path, &conf);
        let mut process = ServerProcess::new(name, program, &root, root.join("nats.log"));
        process.arg("-c").arg(&conf_path);
        NatsServer {
            dir: Some(dir),
            root,
            client_port,
            monitor_port,
            process,
        }
    }

    fn launch(&mut self) {
        self.process.spawn();
        let (client, monitor) = (self.addr(), self.monitor_port);
        self.process
            .wait_until("nats-server to serve JetStream", STARTUP, || {
                tcp_is_listening(client) && healthy(monitor)
            });
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://{}", self.addr())
    }

    pub fn addr(&self) -> SocketAddr {
        loopback(self.client_port)
    }

    pub fn dir(&self) -> &Path {
        &self.root
    }

    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }

    /// The monitoring endpoint's `/jsz?streams=true&consumers=true` as JSON.
    pub fn jsz(&self) -> serde_json::Value {
        http_get(&format!(
            "http://127.0.0.1:{}/jsz?streams=true&consumers=true&config=true",
            self.monitor_port
        ))
        .map(|r| r.json())
        .unwrap_or(serde_json::Value::Null)
    }

    /// SIGKILL, as a crash.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Starts it again with the same ports and store.
    pub fn start_again(&mut self) {
        self.launch();
    }

    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        process::keep_on_panic(&mut self.dir, &self.process);
    }
}

/// `/healthz` answers 200 once JetStream is up (and, in a cluster, current).
fn healthy(monitor: u16) -> bool {
    http_get(&format!("http://127.0.0.1:{monitor}/healthz")).is_ok_and(|r| r.status == 200)
}

/// Three nats-servers joined by cluster routes: a JetStream cluster for streams with 3
/// replicas.
#[derive(Debug)]
pub struct NatsCluster {
    pub servers: Vec<NatsServer>,
}

impl NatsCluster {
    /// Starts three servers and waits until each serves JetStream.
    pub fn start() -> NatsCluster {
        let cluster_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let mut servers: Vec<NatsServer> = cluster_ports
            .iter()
            .enumerate()
            .map(|(i, p)| {
                NatsServer::prepare(
                    &format!("nats{}", i + 1),
                    free_port(),
                    Some((*p, &cluster_ports)),
                )
            })
            .collect();
        // All three start before any is waited for: a lone node has no meta leader.
        for s in &mut servers {
            s.process.spawn();
        }
        for s in &mut servers {
            let (client, monitor) = (s.addr(), s.monitor_port);
            s.process
                .wait_until("the JetStream cluster to form", STARTUP, || {
                    tcp_is_listening(client) && healthy(monitor)
                });
        }
        NatsCluster { servers }
    }

    /// Every server's URL, for a client's `servers`.
    pub fn urls(&self) -> Vec<String> {
        self.servers.iter().map(NatsServer::url).collect()
    }
}
