//! carbon-c-relay (Debian's 3.7.x): a running relay, and its `-t` test mode that prints where
//! each metric would go, the reference for fluxgate's hashing.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::net::{free_port, loopback, send_lines, tcp_is_listening};
use crate::process::{self, require_binary, run_with_timeout, ServerProcess};

const STARTUP: Duration = Duration::from_secs(20);
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// A `cluster` block: `name`, a type (`forward`, `any_of`, `failover`, `carbon_ch`,
/// `fnv1a_ch`, `jump_fnv1a_ch`), a replication count (used by the hashing types only) and
/// members in carbon-c-relay's `host:port[=instance]` form.
pub fn carbon_c_relay_cluster(
    name: &str,
    hash: &str,
    replication: u32,
    destinations: &[&str],
) -> String {
    let kind = if hash.ends_with("_ch") {
        format!("{hash} replication {replication}")
    } else {
        hash.to_owned()
    };
    let mut out = format!("cluster {name}\n    {kind}\n");
    for destination in destinations {
        out.push_str(&format!("        {destination}\n"));
    }
    out.push_str("    ;\n");
    out
}

/// Runs `carbon-c-relay -t -f <config>` with `lines` on stdin and returns what it printed: the
/// parsed configuration, then for each input metric the match, the cluster and the chosen
/// destination(s). [`parse_placement`] extracts the latter.
///
/// # Panics
/// When carbon-c-relay is missing, rejects the config, or does not finish in 20 s.
pub fn carbon_c_relay_test_mode(config: &str, lines: &str) -> String {
    let binary = require_binary("carbon-c-relay", "carbon-c-relay");
    let dir = process::temp_dir("carbon-c-relay-t");
    let path = dir.path().join("relay.conf");
    process::write_file(&path, config);
    let mut command = Command::new(binary);
    command.arg("-t").arg("-f").arg(&path);
    let (status, stdout, stderr) =
        run_with_timeout(command, lines.as_bytes(), Duration::from_secs(20));
    assert!(
        status.success(),
        "carbon-c-relay -t failed ({status}) with config:\n{config}\n--- stdout ---\n{stdout}\n\
         --- stderr ---\n{stderr}"
    );
    stdout
}

/// The destinations carbon-c-relay's test mode chose, per input metric, in input order:
/// `(metric, ["host:port", ...])`. A metric that matched nothing has no destinations.
///
/// The test mode prints, per metric:
/// ```text
/// match
///     * -> servers.a.cpu
///     carbon_ch(dest)
///         127.0.0.1:2204
///     stop
/// ```
pub fn parse_placement(output: &str) -> Vec<(String, Vec<String>)> {
    let mut placements: Vec<(String, Vec<String>)> = Vec::new();
    for line in output.lines() {
        let indent = line.len() - line.trim_start().len();
        let text = line.trim();
        if indent == 4 {
            if let Some((_, metric)) = text.split_once(" -> ") {
                placements.push((metric.to_owned(), Vec::new()));
            }
        } else if indent == 8 && !text.is_empty() {
            if let Some((_, destinations)) = placements.last_mut() {
                destinations.push(text.to_owned());
            }
        }
    }
    placements
}

/// [`carbon_c_relay_test_mode`] then [`parse_placement`].
pub fn carbon_c_relay_placement(config: &str, lines: &str) -> Vec<(String, Vec<String>)> {
    parse_placement(&carbon_c_relay_test_mode(config, lines))
}

/// Options for [`CarbonCRelay`].
#[derive(Debug, Clone)]
pub struct CarbonCRelayBuilder {
    hash: String,
    replication: u32,
    destinations: Vec<String>,
    routes: Option<String>,
    args: Vec<String>,
    statistics: bool,
}

impl Default for CarbonCRelayBuilder {
    fn default() -> Self {
        CarbonCRelayBuilder {
            hash: "carbon_ch".to_owned(),
            replication: 1,
            destinations: Vec::new(),
            routes: None,
            args: Vec::new(),
            statistics: false,
        }
    }
}

impl CarbonCRelayBuilder {
    /// The cluster type (default `carbon_ch`), see [`carbon_c_relay_cluster`].
    #[must_use]
    pub fn hash(mut self, hash: &str) -> Self {
        hash.clone_into(&mut self.hash);
        self
    }

    /// Replication for hashing clusters (default 1).
    #[must_use]
    pub fn replication(mut self, replication: u32) -> Self {
        self.replication = replication;
        self
    }

    /// Adds a member `host:port[=instance]` (a plaintext receiver: carbon-c-relay only speaks
    /// the line protocol).
    #[must_use]
    pub fn destination(mut self, destination: &str) -> Self {
        self.destinations.push(destination.to_owned());
        self
    }

    /// Replaces the generated `cluster dest ...; match * send to dest stop;` with your own
    /// clusters and routes (the `listen` block is still generated).
    #[must_use]
    pub fn routes(mut self, config: &str) -> Self {
        self.routes = Some(config.to_owned());
        self
    }

    /// Runs without `-s`, so carbon-c-relay produces its `carbon.relays.*` statistics (set
    /// their interval and prefix with a `statistics` statement in [`Self::routes`]).
    #[must_use]
    pub fn statistics(mut self) -> Self {
        self.statistics = true;
        self
    }

    /// Extra command-line arguments, e.g. `-c` for allowed characters or `-M` for a line cap.
    #[must_use]
    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.to_owned());
        self
    }

    /// Starts carbon-c-relay (foreground, `-s` submission mode so that it adds no statistics
    /// metrics of its own, 1 worker) and waits until it listens.
    ///
    /// # Panics
    /// When carbon-c-relay is not installed, there is nothing to route to, or it does not come
    /// up.
    pub fn start(self) -> CarbonCRelay {
        let binary = require_binary("carbon-c-relay", "carbon-c-relay");
        let routes = match self.routes {
            Some(routes) => routes,
            None => {
                assert!(
                    !self.destinations.is_empty(),
                    "carbon-c-relay needs at least one destination (or custom routes)"
                );
                let members: Vec<&str> = self.destinations.iter().map(String::as_str).collect();
                format!(
                    "{}\nmatch *\n    send to dest\n    stop\n    ;\n",
                    carbon_c_relay_cluster("dest", &self.hash, self.replication, &members)
                )
            }
        };
        let dir = process::temp_dir("carbon-c-relay");
        let root = dir.path().to_owned();
        let port = free_port();
        let config = format!(
            "listen\n    type linemode\n        127.0.0.1:{port} proto tcp\n    ;\n\n{routes}"
        );
        let config_path = root.join("relay.conf");
        process::write_file(&config_path, &config);
        let mut process = ServerProcess::new(
            "carbon-c-relay",
            binary,
            &root,
            root.join("carbon-c-relay.log"),
        );
        process.arg("-f").arg(&config_path);
        if !self.statistics {
            process.arg("-s");
        }
        process.arg("-w").arg("1");
        for arg in &self.args {
            process.arg(arg);
        }
        let mut relay = CarbonCRelay {
            dir: Some(dir),
            root,
            port,
            config,
            process,
        };
        relay.launch();
        relay
    }
}

/// A running carbon-c-relay, killed when dropped.
#[derive(Debug)]
pub struct CarbonCRelay {
    dir: Option<tempfile::TempDir>,
    root: PathBuf,
    port: u16,
    config: String,
    process: ServerProcess,
}

impl CarbonCRelay {
    /// Options; at least one destination (or custom routes) is required.
    pub fn builder() -> CarbonCRelayBuilder {
        CarbonCRelayBuilder::default()
    }

    /// The plaintext TCP listener.
    pub fn addr(&self) -> SocketAddr {
        loopback(self.port)
    }

    /// The generated configuration file's text.
    pub fn config(&self) -> &str {
        &self.config
    }

    /// The temporary directory.
    pub fn dir(&self) -> &Path {
        &self.root
    }

    /// The relay's log (stdout and stderr).
    pub fn log_path(&self) -> &Path {
        self.process.log_path()
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }

    /// Sends plaintext lines (a newline added after each).
    pub fn send_lines<I, S>(&self, lines: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        send_lines(self.addr(), lines);
    }

    /// Stops the relay gracefully (it flushes its queues for up to a few seconds).
    pub fn stop(&mut self) {
        self.process.stop(SHUTDOWN_GRACE);
    }

    /// Kills the relay with SIGKILL.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Starts the relay again on the same port.
    pub fn start_again(&mut self) {
        self.launch();
    }

    /// Whether the process is alive.
    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    fn launch(&mut self) {
        self.process.spawn();
        let addr = self.addr();
        self.process
            .wait_until("carbon-c-relay to listen", STARTUP, || {
                tcp_is_listening(addr)
            });
    }
}

impl Drop for CarbonCRelay {
    fn drop(&mut self) {
        self.process.kill();
        process::keep_on_panic(&mut self.dir, &self.process);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_blocks() {
        assert_eq!(
            carbon_c_relay_cluster("c", "carbon_ch", 2, &["127.0.0.1:1=a", "127.0.0.1:2=b"]),
            "cluster c\n    carbon_ch replication 2\n        127.0.0.1:1=a\n        \
             127.0.0.1:2=b\n    ;\n"
        );
        assert_eq!(
            carbon_c_relay_cluster("f", "forward", 3, &["h:1"]),
            "cluster f\n    forward\n        h:1\n    ;\n"
        );
    }

    #[test]
    fn parses_test_mode_output() {
        let output = "configuration:\n    relay hostname = vm\n\nparsed configuration follows:\n\
            cluster dest\n    carbon_ch replication 1\n        127.0.0.1:2104=a\n    ;\n\n\
            match\n    * -> servers.a.cpu\n    carbon_ch(dest)\n        127.0.0.1:2204\n    stop\n\
            match\n    * -> foo.bar\n    carbon_ch(dest)\n        127.0.0.1:2104\n        \
            127.0.0.1:2204\n    stop\n";
        assert_eq!(
            parse_placement(output),
            vec![
                (
                    "servers.a.cpu".to_owned(),
                    vec!["127.0.0.1:2204".to_owned()]
                ),
                (
                    "foo.bar".to_owned(),
                    vec!["127.0.0.1:2104".to_owned(), "127.0.0.1:2204".to_owned()]
                ),
            ]
        );
    }
}
