//! The fluxgate binary under test, run as a child process with a config written to a
//! temporary directory.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::{Duration, SystemTime};
use std::{fs, io};

use crate::http::{http_get, HttpResponse};
use crate::process::{self, find_binary, run_with_timeout, ServerProcess};
use crate::workspace_root;

/// Environment variable naming the fluxgate binary to test.
pub const BIN_ENV: &str = "FLUXGATE_BIN";

/// Replaced by the gateway's temporary directory in config text, for paths such as a spool
/// directory that must be known before the gateway starts.
pub const DIR_PLACEHOLDER: &str = "@DIR@";

const STARTUP: Duration = Duration::from_secs(20);

/// The fluxgate binary: `$FLUXGATE_BIN`, else `fluxgate` in the target directory this test
/// binary was built into (so `--release` and `CARGO_TARGET_DIR` are followed), else
/// `<workspace>/target/debug/fluxgate`.
///
/// `cargo test -p fluxgate-e2e` does not build other packages' binaries; run
/// `cargo build -p fluxgate` first. A binary older than the gateway's sources is reported on
/// stderr (shown when a test fails), because a stale binary makes failures baffling.
///
/// # Panics
/// When no binary is found, saying how to build it.
pub fn fluxgate_bin() -> PathBuf {
    resolve_fluxgate_bin(std::env::var_os(BIN_ENV))
}

fn resolve_fluxgate_bin(from_env: Option<OsString>) -> PathBuf {
    if let Some(path) = from_env.filter(|path| !path.is_empty()) {
        let path = PathBuf::from(path);
        assert!(
            find_binary(&path.to_string_lossy()).is_some(),
            "{BIN_ENV}={} is not an executable file",
            path.display()
        );
        return path;
    }
    let beside_tests = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("fluxgate")));
    let default = workspace_root()
        .join("target")
        .join("debug")
        .join("fluxgate");
    let found = beside_tests
        .into_iter()
        .chain([default.clone()])
        .find(|candidate| find_binary(&candidate.to_string_lossy()).is_some());
    let Some(binary) = found else {
        panic!(
            "fluxgate binary not found at {}: run `cargo build -p fluxgate` first \
             (or set {BIN_ENV})",
            default.display()
        );
    };
    warn_if_stale(&binary);
    binary
}

fn warn_if_stale(binary: &Path) {
    let Ok(built) = fs::metadata(binary).and_then(|meta| meta.modified()) else {
        return;
    };
    let sources = workspace_root().join("crates");
    if let Some(newest) = newest_rust_source(&sources) {
        if newest > built {
            eprintln!(
                "warning: {} is older than the sources under {}; run `cargo build -p fluxgate`",
                binary.display(),
                sources.display()
            );
        }
    }
}

fn newest_rust_source(dir: &Path) -> Option<SystemTime> {
    let mut newest = None;
    for entry in fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let candidate = if path.is_dir() {
            if name == "target" || name == "fuzz" {
                continue;
            }
            newest_rust_source(&path)
        } else if path
            .extension()
            .is_some_and(|ext| ext == "rs" || ext == "toml")
        {
            entry.metadata().and_then(|meta| meta.modified()).ok()
        } else {
            None
        };
        newest = newest.max(candidate);
    }
    newest
}

/// A `Command` for the fluxgate binary, for the one-shot subcommands (`check`, `dry-run`,
/// `encode-name`, `decode-name`).
pub fn fluxgate_command() -> Command {
    Command::new(fluxgate_bin())
}

/// Runs `fluxgate <args>` with `stdin` and returns (status, stdout, stderr).
///
/// # Panics
/// When it cannot start or runs longer than `timeout`.
pub fn run_fluxgate(args: &[&str], stdin: &str, timeout: Duration) -> (ExitStatus, String, String) {
    let mut command = fluxgate_command();
    command.args(args);
    run_with_timeout(command, stdin.as_bytes(), timeout)
}

/// Options for [`Gateway`].
#[derive(Debug, Clone)]
pub struct GatewayBuilder {
    config: String,
    binary: Option<PathBuf>,
    http_addr: Option<SocketAddr>,
    envs: Vec<(OsString, OsString)>,
    startup_timeout: Duration,
}

impl GatewayBuilder {
    /// The address of `[listeners.http] address` in the config, polled for `GET /health`.
    /// Required by [`GatewayBuilder::start`].
    #[must_use]
    pub fn http_addr(mut self, addr: SocketAddr) -> Self {
        self.http_addr = Some(addr);
        self
    }

    /// Sets an environment variable for the gateway (e.g. `FLUXGATE_<OUTPUT>_PASSWORD`,
    /// `RUST_LOG`).
    #[must_use]
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.envs.push((key.into(), value.into()));
        self
    }

    /// Runs this binary instead of [`fluxgate_bin`] (another build, or a stand-in).
    #[must_use]
    pub fn binary(mut self, path: &Path) -> Self {
        self.binary = Some(path.to_owned());
        self
    }

    /// How long to wait for `/health` (default 20 s).
    #[must_use]
    pub fn startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup_timeout = timeout;
        self
    }

    /// Starts `fluxgate run --config <dir>/fluxgate.toml` and waits until
    /// `GET http://<http_addr>/health` answers 200.
    ///
    /// # Panics
    /// Without an HTTP address, when the binary is missing, or when the gateway exits or does
    /// not become healthy in time (with the end of its log).
    pub fn start(self) -> Gateway {
        let addr = self.http_addr.expect(
            "Gateway needs the [listeners.http] address to poll /health: use .http_addr(addr)",
        );
        let timeout = self.startup_timeout;
        let mut gateway = self.spawn();
        gateway.wait_healthy(addr, timeout);
        gateway
    }

    /// Starts the gateway without waiting for anything, e.g. to see it reject a config:
    /// follow with [`Gateway::wait_exit`].
    pub fn spawn(self) -> Gateway {
        let binary = self.binary.unwrap_or_else(fluxgate_bin);
        let dir = process::temp_dir("fluxgate");
        let root = dir.path().to_owned();
        let config_path = root.join("fluxgate.toml");
        process::write_file(&config_path, &substitute_dir(&self.config, &root));
        let mut process = ServerProcess::new("fluxgate", binary, &root, root.join("fluxgate.log"));
        process.arg("run").arg("--config").arg(&config_path);
        // Plain log text, so that tests can search it and humans can read the file.
        process.env("NO_COLOR", "1");
        for (key, value) in &self.envs {
            process.env(key, value);
        }
        process.spawn();
        Gateway {
            dir: Some(dir),
            root,
            config_path,
            http_addr: self.http_addr,
            startup_timeout: self.startup_timeout,
            process,
        }
    }
}

fn substitute_dir(config: &str, dir: &Path) -> String {
    config.replace(DIR_PLACEHOLDER, &dir.display().to_string())
}

/// A running fluxgate, killed (SIGKILL) when dropped. Its stdout and stderr go to
/// `<dir>/fluxgate.log`; when the test panics the log tail is printed and the directory kept.
#[derive(Debug)]
pub struct Gateway {
    dir: Option<tempfile::TempDir>,
    root: PathBuf,
    config_path: PathBuf,
    http_addr: Option<SocketAddr>,
    startup_timeout: Duration,
    process: ServerProcess,
}

impl Gateway {
    /// Writes `config` (TOML; `@DIR@` becomes the temporary directory), runs
    /// `fluxgate run --config <file>`, and waits until `GET http://<http_addr>/health` is 200.
    pub fn start(config: &str, http_addr: SocketAddr) -> Gateway {
        Gateway::builder(config).http_addr(http_addr).start()
    }

    /// Options: environment, startup timeout, or spawning without waiting.
    pub fn builder(config: &str) -> GatewayBuilder {
        GatewayBuilder {
            config: config.to_owned(),
            binary: None,
            http_addr: None,
            envs: Vec::new(),
            startup_timeout: STARTUP,
        }
    }

    /// The HTTP listener address given at start.
    ///
    /// # Panics
    /// When the gateway was spawned without one.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
            .expect("this Gateway was started without an HTTP address")
    }

    /// `http://<http_addr>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.http_addr())
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// The temporary directory (config, log, anything `@DIR@` pointed at).
    pub fn dir(&self) -> &Path {
        &self.root
    }

    /// The config file the gateway was started with.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// Replaces the config file (with `@DIR@` substituted), e.g. before [`Gateway::sighup`].
    pub fn write_config(&self, config: &str) {
        process::write_file(&self.config_path, &substitute_dir(config, &self.root));
    }

    /// The log file (stdout and stderr).
    pub fn log_path(&self) -> &Path {
        self.process.log_path()
    }

    /// The whole log so far.
    pub fn log(&self) -> String {
        process::read_to_string_lossy(self.process.log_path()).unwrap_or_default()
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }

    /// Sends SIGTERM (graceful shutdown: drain and flush).
    pub fn sigterm(&mut self) {
        self.process.signal("TERM");
    }

    /// Sends SIGHUP (reload the config).
    pub fn sighup(&mut self) {
        self.process.signal("HUP");
    }

    /// Sends any signal by name (`INT`, `KILL`, ...).
    pub fn signal(&mut self, name: &str) {
        self.process.signal(name);
    }

    /// Kills the gateway with SIGKILL.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Starts the gateway again after it exited or was killed: the same binary, environment,
    /// config file and temporary directory (so a `data_dir` under `@DIR@` is found again), and
    /// the log appended to. Waits for `/health` when the gateway has an HTTP address.
    ///
    /// # Panics
    /// When it is still running, or exits or does not become healthy in time.
    pub fn start_again(&mut self) {
        self.process.spawn();
        if let Some(addr) = self.http_addr {
            self.wait_healthy(addr, self.startup_timeout);
        }
    }

    /// Waits for the gateway to exit and returns its status.
    ///
    /// # Panics
    /// When it is not running or still runs after `timeout` (with the end of its log).
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        self.process
            .wait_exit(timeout)
            .unwrap_or_else(|message| panic!("{message}"))
    }

    /// Whether the process is alive.
    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    /// Polls `GET http://<addr>/health` until it answers 200.
    ///
    /// # Panics
    /// When the gateway exits first or `timeout` passes, with the end of its log.
    pub fn wait_healthy(&mut self, addr: SocketAddr, timeout: Duration) {
        self.http_addr.get_or_insert(addr);
        let url = format!("http://{addr}/health");
        let what = format!("GET {url} to answer 200");
        self.process.wait_until(&what, timeout, || {
            http_get(&url).is_ok_and(|r| r.status == 200)
        });
    }

    /// `GET <path>` on the gateway's HTTP listener.
    pub fn get(&self, path: &str) -> io::Result<HttpResponse> {
        http_get(&format!("{}{path}", self.url()))
    }

    /// The Prometheus text of `GET /metrics`.
    ///
    /// # Panics
    /// Unless it answers 200.
    pub fn metrics(&self) -> String {
        let response = self
            .get("/metrics")
            .unwrap_or_else(|err| panic!("GET /metrics failed: {err}\n{}", self.describe()));
        assert_eq!(
            response.status,
            200,
            "GET /metrics: {}\n{}",
            response.text(),
            self.describe()
        );
        response.text()
    }

    /// The sum of the samples of `name` whose labels include all of `labels`, from
    /// `GET /metrics`; `None` when no sample matches.
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        prometheus_value(&self.metrics(), name, labels)
    }

    fn describe(&self) -> String {
        self.process.describe_log()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.process.kill();
        process::keep_on_panic(&mut self.dir, &self.process);
    }
}

/// Sums the samples named `name` in Prometheus text exposition format whose labels include
/// every `(key, value)` of `labels`; `None` when no sample matches.
pub fn prometheus_value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut sum = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((sample_name, sample_labels, value)) = parse_sample(line) else {
            continue;
        };
        if sample_name != name {
            continue;
        }
        if labels
            .iter()
            .all(|(key, value)| sample_labels.get(*key).map(String::as_str) == Some(*value))
        {
            *sum.get_or_insert(0.0) += value;
        }
    }
    sum
}

/// `name{k="v",...} value [timestamp]` → (name, labels, value).
fn parse_sample(line: &str) -> Option<(&str, BTreeMap<String, String>, f64)> {
    let name_end = line.find(['{', ' '])?;
    let name = &line[..name_end];
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(after_brace) = rest.strip_prefix('{') {
        let mut chars = after_brace.char_indices();
        let mut key = String::new();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '}' => break i,
                ',' | ' ' => {}
                '=' => {
                    if chars.next()?.1 != '"' {
                        return None;
                    }
                    let mut value = String::new();
                    loop {
                        match chars.next()?.1 {
                            '"' => break,
                            '\\' => match chars.next()?.1 {
                                'n' => value.push('\n'),
                                other => value.push(other),
                            },
                            other => value.push(other),
                        }
                    }
                    labels.insert(std::mem::take(&mut key), value);
                }
                c => key.push(c),
            }
        };
        rest = &after_brace[end + 1..];
    }
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        number => number.parse().ok()?,
    };
    Some((name, labels, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    const METRICS: &str = r#"# HELP fluxgate_received_total Points received.
# TYPE fluxgate_received_total counter
fluxgate_received_total{listener="plaintext_tcp"} 10
fluxgate_received_total{listener="pickle"} 5
fluxgate_rejected_total{listener="plaintext_tcp",reason="bad \"value\""} 2
fluxgate_queue_points{output="influx"} 0
fluxgate_batch_duration_seconds_bucket{output="influx",le="+Inf"} 3
fluxgate_up 1 1700000000000
"#;

    #[test]
    fn sums_matching_samples() {
        assert_eq!(
            prometheus_value(METRICS, "fluxgate_received_total", &[]),
            Some(15.0)
        );
        assert_eq!(
            prometheus_value(
                METRICS,
                "fluxgate_received_total",
                &[("listener", "pickle")]
            ),
            Some(5.0)
        );
        assert_eq!(
            prometheus_value(
                METRICS,
                "fluxgate_rejected_total",
                &[("reason", "bad \"value\"")]
            ),
            Some(2.0)
        );
        assert_eq!(
            prometheus_value(
                METRICS,
                "fluxgate_batch_duration_seconds_bucket",
                &[("le", "+Inf")]
            ),
            Some(3.0)
        );
        assert_eq!(prometheus_value(METRICS, "fluxgate_up", &[]), Some(1.0));
        assert_eq!(
            prometheus_value(METRICS, "fluxgate_queue_points", &[]),
            Some(0.0)
        );
        assert_eq!(
            prometheus_value(METRICS, "fluxgate_received_total", &[("listener", "udp")]),
            None
        );
        assert_eq!(prometheus_value(METRICS, "fluxgate_received", &[]), None);
    }

    #[test]
    fn substitutes_the_directory() {
        assert_eq!(
            substitute_dir("spool = \"@DIR@/spool\"", Path::new("/tmp/x")),
            "spool = \"/tmp/x/spool\""
        );
    }

    #[test]
    fn a_wrong_fluxgate_bin_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("fluxgate");
        let panic = std::panic::catch_unwind(|| resolve_fluxgate_bin(Some(missing.clone().into())))
            .unwrap_err();
        let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
        assert_eq!(
            message,
            format!(
                "FLUXGATE_BIN={} is not an executable file",
                missing.display()
            )
        );
    }
}
