//! Real carbon daemons (Debian's `graphite-carbon` 1.1.x): carbon-cache storing into whisper
//! files, and carbon-relay forwarding to destinations, each in its own temporary directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use std::{fs, thread};

use crate::net::{free_port, loopback, send_lines, send_tcp, tcp_is_listening};
use crate::pickle::pickle_frame;
use crate::process::{self, require_binary, run_with_timeout, ServerProcess};
use crate::python::system_python;

/// Twisted and carbon import slowly; two of them starting at once on a loaded 2-core machine
/// can take several seconds each.
const STARTUP: Duration = Duration::from_secs(30);
/// carbon flushes its cache on SIGTERM; about 2 s.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Spawning whisper-fetch costs a Python start-up, so it is not polled as fast as a socket.
const FETCH_POLL: Duration = Duration::from_millis(100);

/// Every stored datapoint of every whisper file: dotted metric key → `(timestamp, value)`.
pub type Stored = std::collections::BTreeMap<String, Vec<(i64, f64)>>;

/// Reads every whisper file under `argv[1]` and prints `{key: [[timestamp, "<f64 bits>"]]}`
/// for the slots that hold a value. The value travels as its 8 IEEE bytes in hex so that no
/// decimal round trip can hide or invent a difference. A file carbon is still creating is
/// left out (it shows up on the next look).
const READ_WHISPER: &str = r#"
import json, os, struct, sys, whisper
base = sys.argv[1]
stored = {}
for root, _, files in os.walk(base):
    for name in files:
        if not name.endswith('.wsp'):
            continue
        path = os.path.join(root, name)
        key = os.path.relpath(path, base)[:-len('.wsp')].replace(os.sep, '.')
        try:
            (start, _, step), values = whisper.fetch(path, 0)
        except Exception:
            continue
        stored[key] = [[start + i * step, struct.pack('>d', v).hex()]
                       for i, v in enumerate(values) if v is not None]
json.dump(stored, sys.stdout)
"#;

/// Seconds since the epoch, the clock carbon and whisper judge timestamps by.
pub fn unix_now() -> i64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    i64::try_from(now.as_secs()).expect("time fits i64")
}

/// `[section]` settings of a carbon.conf, later values replacing earlier ones with the same key
/// (carbon's ConfigParser rejects duplicate keys).
#[derive(Debug, Clone, Default)]
struct Settings(Vec<(String, String)>);

impl Settings {
    fn set(&mut self, key: &str, value: impl ToString) {
        let key = key.to_ascii_uppercase();
        let value = value.to_string();
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some(entry) => entry.1 = value,
            None => self.0.push((key, value)),
        }
    }

    fn render(&self, section: &str) -> String {
        let mut out = format!("[{section}]\n");
        for (key, value) in &self.0 {
            out.push_str(&format!("{key} = {value}\n"));
        }
        out
    }
}

/// The settings both daemons share: everything under `root`, loopback only, no UDP, no
/// self-reported `carbon.*` metrics (they would show up in the data the tests look at), no tag
/// database (it needs a graphite-web), no limits that would make a test wait.
fn base_settings(root: &Path, line_port: u16, pickle_port: u16) -> Settings {
    let storage = root.join("storage");
    let mut settings = Settings::default();
    settings.set("STORAGE_DIR", storage.display());
    settings.set("LOCAL_DATA_DIR", storage.join("whisper").display());
    settings.set("WHITELISTS_DIR", storage.join("lists").display());
    settings.set("LOG_DIR", storage.join("log").display());
    settings.set("PID_DIR", storage.display());
    settings.set("USER", "");
    settings.set("ENABLE_LOGROTATION", "False");
    settings.set("LINE_RECEIVER_INTERFACE", "127.0.0.1");
    settings.set("LINE_RECEIVER_PORT", line_port);
    settings.set("PICKLE_RECEIVER_INTERFACE", "127.0.0.1");
    settings.set("PICKLE_RECEIVER_PORT", pickle_port);
    settings.set("ENABLE_UDP_LISTENER", "False");
    settings.set("UDP_RECEIVER_INTERFACE", "127.0.0.1");
    settings.set("CARBON_METRIC_INTERVAL", 0);
    settings.set("ENABLE_TAGS", "False");
    settings.set("ENABLE_MANHOLE", "False");
    settings.set("ENABLE_AMQP", "False");
    settings.set("LOG_LISTENER_CONN_SUCCESS", "False");
    settings
}

/// Writes carbon.conf and the schema files carbon insists on, and builds the command
/// (`carbon-<kind> --config=<root>/conf/carbon.conf --nodaemon start`, logging to stdout).
fn prepare(
    kind: &str,
    root: &Path,
    settings: &Settings,
    schemas: &str,
    extra_files: &[(&str, String)],
) -> ServerProcess {
    let program = format!("carbon-{kind}");
    let binary = require_binary(&program, "graphite-carbon");
    let conf = root.join("conf");
    process::create_dir(&conf);
    process::create_dir(&root.join("storage").join("whisper"));
    process::create_dir(&root.join("storage").join("lists"));
    process::create_dir(&root.join("storage").join("log"));
    let config_path = conf.join("carbon.conf");
    process::write_file(&config_path, &settings.render(kind));
    process::write_file(&conf.join("storage-schemas.conf"), schemas);
    for (name, contents) in extra_files {
        process::write_file(&conf.join(name), contents);
    }
    let mut process =
        ServerProcess::new(&program, binary, root, root.join(format!("{program}.log")));
    process
        .arg(format!("--config={}", config_path.display()))
        .arg("--nodaemon")
        .arg("start")
        // Debian's Twisted warns about deprecated ciphers on every start.
        .env("PYTHONWARNINGS", "ignore");
    process
}

fn launch(process: &mut ServerProcess, ports: &[SocketAddr]) {
    process.spawn();
    let what = format!("{} to listen on {ports:?}", process.name());
    process.wait_until(&what, STARTUP, || {
        ports.iter().all(|&addr| tcp_is_listening(addr))
    });
}

/// Options for [`CarbonCache`].
#[derive(Debug, Clone)]
pub struct CarbonCacheBuilder {
    retentions: String,
    aggregation_method: String,
    x_files_factor: String,
    settings: Vec<(String, String)>,
}

impl Default for CarbonCacheBuilder {
    fn default() -> Self {
        CarbonCacheBuilder {
            retentions: "1s:1h".to_owned(),
            aggregation_method: "average".to_owned(),
            x_files_factor: "0".to_owned(),
            settings: Vec::new(),
        }
    }
}

impl CarbonCacheBuilder {
    /// The `retentions` of the single storage schema (default `1s:1h`: every second kept, so
    /// each datapoint is visible; whisper drops points older than the longest retention and
    /// points in the future).
    #[must_use]
    pub fn retentions(mut self, retentions: &str) -> Self {
        retentions.clone_into(&mut self.retentions);
        self
    }

    /// The storage-aggregation method (default `average`).
    #[must_use]
    pub fn aggregation_method(mut self, method: &str) -> Self {
        method.clone_into(&mut self.aggregation_method);
        self
    }

    /// The storage-aggregation `xFilesFactor` (default 0: any known point makes an aggregate).
    #[must_use]
    pub fn x_files_factor(mut self, factor: &str) -> Self {
        factor.clone_into(&mut self.x_files_factor);
        self
    }

    /// Any other `[cache]` setting of carbon.conf, e.g. `("MAX_CACHE_SIZE", "1000")`.
    #[must_use]
    pub fn setting(mut self, key: &str, value: &str) -> Self {
        self.settings.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Starts carbon-cache and waits until its line, pickle and cache-query ports listen.
    ///
    /// # Panics
    /// When graphite-carbon is not installed or carbon-cache does not come up.
    pub fn start(self) -> CarbonCache {
        let dir = process::temp_dir("carbon-cache");
        let root = dir.path().to_owned();
        let (line_port, pickle_port, query_port) = (free_port(), free_port(), free_port());
        let mut settings = base_settings(&root, line_port, pickle_port);
        settings.set("CACHE_QUERY_INTERFACE", "127.0.0.1");
        settings.set("CACHE_QUERY_PORT", query_port);
        settings.set("MAX_CACHE_SIZE", "inf");
        settings.set("MAX_UPDATES_PER_SECOND", "inf");
        settings.set("MAX_CREATES_PER_MINUTE", "inf");
        settings.set("LOG_UPDATES", "False");
        settings.set("LOG_CACHE_HITS", "False");
        settings.set("LOG_CACHE_QUEUE_SORTS", "False");
        for (key, value) in &self.settings {
            settings.set(key, value);
        }
        let schemas = format!(
            "[default]\npattern = .*\nretentions = {}\n",
            self.retentions
        );
        let aggregation = format!(
            "[default]\npattern = .*\nxFilesFactor = {}\naggregationMethod = {}\n",
            self.x_files_factor, self.aggregation_method
        );
        let process = prepare(
            "cache",
            &root,
            &settings,
            &schemas,
            &[("storage-aggregation.conf", aggregation)],
        );
        let mut cache = CarbonCache {
            dir: Some(dir),
            root,
            line_port,
            pickle_port,
            query_port,
            process,
        };
        cache.launch();
        cache
    }
}

/// A running carbon-cache writing whisper files under its temporary directory, killed when
/// dropped. Several can run at once.
#[derive(Debug)]
pub struct CarbonCache {
    dir: Option<tempfile::TempDir>,
    root: PathBuf,
    line_port: u16,
    pickle_port: u16,
    query_port: u16,
    process: ServerProcess,
}

impl CarbonCache {
    /// Starts a carbon-cache with retentions `1s:1h`.
    pub fn start() -> CarbonCache {
        CarbonCacheBuilder::default().start()
    }

    /// Options: retentions, aggregation, other carbon.conf settings.
    pub fn builder() -> CarbonCacheBuilder {
        CarbonCacheBuilder::default()
    }

    /// Plaintext (`path value timestamp\n`) receiver.
    pub fn line_addr(&self) -> SocketAddr {
        loopback(self.line_port)
    }

    /// Pickle receiver.
    pub fn pickle_addr(&self) -> SocketAddr {
        loopback(self.pickle_port)
    }

    /// Cache query port (what graphite-web asks for unwritten points).
    pub fn cache_query_addr(&self) -> SocketAddr {
        loopback(self.query_port)
    }

    /// The temporary directory (conf/, storage/, log).
    pub fn dir(&self) -> &Path {
        &self.root
    }

    /// Where the whisper files are.
    pub fn whisper_dir(&self) -> PathBuf {
        self.root.join("storage").join("whisper")
    }

    /// The server log.
    pub fn log_path(&self) -> &Path {
        self.process.log_path()
    }

    /// The last `lines` lines of the server log.
    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }

    /// The whisper file carbon stores `metric` in: dots become directories; a tagged series
    /// (`name;k=v`) is normalized and hashed by carbon's own code (`TaggedSeries`, run with
    /// Debian's Python), exactly as carbon-cache does.
    pub fn whisper_path(&self, metric: &str) -> PathBuf {
        let relative = if metric.contains(';') {
            tagged_relative_path(metric)
        } else {
            format!("{}.wsp", metric.trim_start_matches('.').replace('.', "/"))
        };
        self.whisper_dir().join(relative)
    }

    /// Every metric with a whisper file, as dotted paths, sorted. Tagged series appear under
    /// their hashed file name (`_tagged.<3 hex>.<3 hex>.<sha256>`).
    pub fn metrics(&self) -> Vec<String> {
        let base = self.whisper_dir();
        let mut found = Vec::new();
        collect_whisper_files(&base, &base, &mut found);
        found.sort();
        found
    }

    /// The stored values of `metric` for the interval `(from, until]` (seconds), one entry per
    /// step, `None` where nothing was written, as `whisper-fetch` reports them. Empty when the
    /// metric has no whisper file yet.
    ///
    /// # Panics
    /// When whisper-fetch is missing or fails on an existing file.
    pub fn fetch(&self, metric: &str, from: i64, until: i64) -> Vec<(i64, Option<f64>)> {
        let path = self.whisper_path(metric);
        if !path.exists() {
            return Vec::new();
        }
        whisper_fetch(&path, from, until)
    }

    /// Every datapoint in every whisper file so far, read by one Python process: dotted
    /// metric key (a tagged series under its hashed `_tagged` file) → `(timestamp, value)`
    /// for the slots that hold a value, values bit for bit.
    ///
    /// # Panics
    /// When the whisper reader fails.
    pub fn stored(&self) -> Stored {
        let whisper_dir = self.whisper_dir();
        let stdout = system_python().run_ok(
            READ_WHISPER,
            &[&whisper_dir.to_string_lossy()],
            Duration::from_secs(60),
        );
        let json: serde_json::Value =
            serde_json::from_str(&stdout).expect("the whisper reader prints JSON");
        let mut stored = Stored::new();
        for (key, points) in json.as_object().expect("an object") {
            let points = points
                .as_array()
                .expect("a list")
                .iter()
                .map(|point| {
                    let timestamp = point[0].as_i64().expect("an integer timestamp");
                    let bits = u64::from_str_radix(point[1].as_str().expect("hex"), 16)
                        .expect("16 hex digits");
                    (timestamp, f64::from_bits(bits))
                })
                .collect();
            stored.insert(key.clone(), points);
        }
        stored
    }

    /// The non-empty values of `metric` over the last hour.
    pub fn points(&self, metric: &str) -> Vec<(i64, f64)> {
        let now = unix_now();
        self.fetch(metric, now - 3600, now)
            .into_iter()
            .filter_map(|(time, value)| value.map(|value| (time, value)))
            .collect()
    }

    /// Waits until `metric` has at least `n` non-empty values in the last hour and returns
    /// them. carbon writes asynchronously from its cache, so a point is visible some tens of
    /// milliseconds after carbon received it.
    ///
    /// # Panics
    /// After `timeout`, with what is stored and the end of carbon's log.
    pub fn wait_for_points(&self, metric: &str, n: usize, timeout: Duration) -> Vec<(i64, f64)> {
        let deadline = Instant::now() + timeout;
        let path = self.whisper_path(metric);
        loop {
            if path.exists() {
                let points = self.points(metric);
                if points.len() >= n {
                    return points;
                }
            }
            if Instant::now() >= deadline {
                let stored = if path.exists() {
                    format!("{:?}", self.points(metric))
                } else {
                    format!("no file {}", path.display())
                };
                panic!(
                    "timed out after {timeout:?} waiting for {n} point(s) of {metric:?}; \
                     stored: {stored}; metrics present: {:?}\n{}",
                    self.metrics(),
                    self.process.describe_log()
                );
            }
            thread::sleep(FETCH_POLL);
        }
    }

    /// Sends plaintext lines (a newline added after each) to the line receiver.
    pub fn send_lines<I, S>(&self, lines: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        send_lines(self.line_addr(), lines);
    }

    /// Sends one pickle frame of `(path, timestamp, value)` to the pickle receiver.
    pub fn send_pickle(&self, points: &[(&str, i64, f64)]) {
        send_tcp(self.pickle_addr(), &pickle_frame(points));
    }

    /// Stops carbon-cache gracefully (it flushes its cache); whisper files and ports are kept
    /// for [`CarbonCache::start_again`].
    pub fn stop(&mut self) {
        self.process.stop(SHUTDOWN_GRACE);
    }

    /// Kills carbon-cache with SIGKILL: unwritten cached points are lost, as in a crash.
    pub fn kill(&mut self) {
        self.process.kill();
        // twistd left its pidfile; carbon would refuse to start if the pid got reused.
        let _ = fs::remove_file(self.root.join("storage").join("carbon-cache-a.pid"));
    }

    /// Starts carbon-cache again with the same ports and data.
    pub fn start_again(&mut self) {
        self.launch();
    }

    /// Whether the process is alive.
    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    fn launch(&mut self) {
        let ports = [
            self.line_addr(),
            self.pickle_addr(),
            self.cache_query_addr(),
        ];
        launch(&mut self.process, &ports);
    }
}

impl Drop for CarbonCache {
    fn drop(&mut self) {
        self.process.kill();
        process::keep_on_panic(&mut self.dir, &self.process);
    }
}

fn collect_whisper_files(base: &Path, dir: &Path, found: &mut Vec<String>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_whisper_files(base, &path, found);
        } else if path.extension().is_some_and(|ext| ext == "wsp") {
            let relative = path.strip_prefix(base).unwrap_or(&path).with_extension("");
            let name: Vec<String> = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            found.push(name.join("."));
        }
    }
}

fn tagged_relative_path(metric: &str) -> String {
    let python = system_python();
    let code = "import os, sys\n\
                from carbon.util import TaggedSeries\n\
                path = TaggedSeries.parse(sys.argv[1]).path\n\
                print(TaggedSeries.encode(path, os.sep, hash_only=True) + '.wsp')";
    let (status, stdout, stderr) = python.run(code, &[metric], Duration::from_secs(20));
    assert!(
        status.success(),
        "carbon cannot encode tagged series {metric:?}: {stderr}"
    );
    stdout.trim().to_owned()
}

/// Runs `whisper-fetch --json` on a file and parses its answer. The "JSON" is Python's list
/// repr, which can hold `inf` and `nan`, so the values are parsed by hand.
fn whisper_fetch(path: &Path, from: i64, until: i64) -> Vec<(i64, Option<f64>)> {
    let binary = require_binary("whisper-fetch", "graphite-carbon");
    let mut command = Command::new(binary);
    command
        .arg("--json")
        .arg(format!("--from={from}"))
        .arg(format!("--until={until}"))
        .arg(path);
    let (status, stdout, stderr) = run_with_timeout(command, b"", Duration::from_secs(20));
    if !status.success() {
        // whisper-fetch exits non-zero for an empty or out-of-retention interval.
        if stderr.contains("No data in selected timerange") {
            return Vec::new();
        }
        panic!(
            "whisper-fetch {} failed ({status}): {stderr}",
            path.display()
        );
    }
    parse_whisper_json(&stdout)
        .unwrap_or_else(|err| panic!("cannot parse whisper-fetch output ({err}): {stdout}"))
}

fn parse_whisper_json(text: &str) -> Result<Vec<(i64, Option<f64>)>, String> {
    let field = |name: &str| -> Result<&str, String> {
        let key = format!("\"{name}\"");
        let start = text.find(&key).ok_or_else(|| format!("no {key}"))? + key.len();
        let rest = text[start..]
            .trim_start()
            .trim_start_matches(':')
            .trim_start();
        Ok(rest)
    };
    let integer = |name: &str| -> Result<i64, String> {
        let rest = field(name)?;
        let end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '-'))
            .unwrap_or(rest.len());
        rest[..end]
            .parse()
            .map_err(|_| format!("bad {name}: {:?}", &rest[..end]))
    };
    let start = integer("start")?;
    let step = integer("step")?;
    let values = field("values")?;
    let list = values
        .strip_prefix('[')
        .and_then(|rest| rest.split_once(']'))
        .map(|(list, _)| list)
        .ok_or("values is not a list")?;
    let mut out = Vec::new();
    let mut time = start;
    for item in list
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
    {
        let value = match item {
            "null" | "None" => None,
            number => Some(
                number
                    .parse::<f64>()
                    .map_err(|_| format!("bad value {number:?}"))?,
            ),
        };
        out.push((time, value));
        time += step;
    }
    Ok(out)
}

/// How carbon-relay picks destinations (`RELAY_METHOD`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayMethod {
    /// `rules`: relay-rules.conf; the fixture writes one default rule to every destination.
    Rules,
    /// `consistent-hashing`: carbon's `ConsistentHashingRouter`.
    ConsistentHashing,
    /// `aggregated-consistent-hashing`.
    AggregatedConsistentHashing,
    /// `fast-hashing`.
    FastHashing,
    /// `fast-aggregated-hashing`.
    FastAggregatedHashing,
}

impl RelayMethod {
    fn as_str(self) -> &'static str {
        match self {
            RelayMethod::Rules => "rules",
            RelayMethod::ConsistentHashing => "consistent-hashing",
            RelayMethod::AggregatedConsistentHashing => "aggregated-consistent-hashing",
            RelayMethod::FastHashing => "fast-hashing",
            RelayMethod::FastAggregatedHashing => "fast-aggregated-hashing",
        }
    }
}

/// Options for [`CarbonRelay`].
#[derive(Debug, Clone)]
pub struct CarbonRelayBuilder {
    method: RelayMethod,
    destinations: Vec<String>,
    replication: u32,
    diverse_replicas: bool,
    protocol: String,
    settings: Vec<(String, String)>,
}

impl Default for CarbonRelayBuilder {
    fn default() -> Self {
        CarbonRelayBuilder {
            method: RelayMethod::ConsistentHashing,
            destinations: Vec::new(),
            replication: 1,
            diverse_replicas: true,
            protocol: "pickle".to_owned(),
            settings: Vec::new(),
        }
    }
}

impl CarbonRelayBuilder {
    /// `RELAY_METHOD` (default consistent-hashing).
    #[must_use]
    pub fn method(mut self, method: RelayMethod) -> Self {
        self.method = method;
        self
    }

    /// Adds a destination in carbon's `host:port[:instance]` form, e.g. `127.0.0.1:2104:a`.
    /// The port is the destination's pickle port (or line port with protocol `line`).
    #[must_use]
    pub fn destination(mut self, destination: &str) -> Self {
        self.destinations.push(destination.to_owned());
        self
    }

    /// `REPLICATION_FACTOR` (default 1).
    #[must_use]
    pub fn replication(mut self, factor: u32) -> Self {
        self.replication = factor;
        self
    }

    /// `DIVERSE_REPLICAS` (default true, carbon's default).
    #[must_use]
    pub fn diverse_replicas(mut self, diverse: bool) -> Self {
        self.diverse_replicas = diverse;
        self
    }

    /// `DESTINATION_PROTOCOL`: `pickle` (default) or `line`.
    #[must_use]
    pub fn destination_protocol(mut self, protocol: &str) -> Self {
        protocol.clone_into(&mut self.protocol);
        self
    }

    /// Any other `[relay]` setting of carbon.conf.
    #[must_use]
    pub fn setting(mut self, key: &str, value: &str) -> Self {
        self.settings.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Starts carbon-relay and waits until its line and pickle ports listen. Destinations need
    /// not be up: carbon-relay queues and reconnects.
    ///
    /// # Panics
    /// Without destinations, when graphite-carbon is not installed, or when the relay does not
    /// come up.
    pub fn start(self) -> CarbonRelay {
        assert!(
            !self.destinations.is_empty(),
            "carbon-relay needs at least one destination"
        );
        let dir = process::temp_dir("carbon-relay");
        let root = dir.path().to_owned();
        let (line_port, pickle_port) = (free_port(), free_port());
        let destinations = self.destinations.join(", ");
        let mut settings = base_settings(&root, line_port, pickle_port);
        settings.set("RELAY_METHOD", self.method.as_str());
        settings.set("DESTINATIONS", &destinations);
        settings.set("REPLICATION_FACTOR", self.replication);
        settings.set(
            "DIVERSE_REPLICAS",
            if self.diverse_replicas {
                "True"
            } else {
                "False"
            },
        );
        settings.set("DESTINATION_PROTOCOL", &self.protocol);
        settings.set("MAX_QUEUE_SIZE", 100_000);
        for (key, value) in &self.settings {
            settings.set(key, value);
        }
        let rules = format!("[default]\ndefault = true\ndestinations = {destinations}\n");
        let process = prepare(
            "relay",
            &root,
            &settings,
            "[default]\npattern = .*\nretentions = 1s:1h\n",
            &[("relay-rules.conf", rules)],
        );
        let mut relay = CarbonRelay {
            dir: Some(dir),
            root,
            line_port,
            pickle_port,
            process,
        };
        relay.launch();
        relay
    }
}

/// A running carbon-relay, killed when dropped. It forwards with pickle protocol 2 (at most
/// 500 datapoints per frame) unless told to use `line`.
#[derive(Debug)]
pub struct CarbonRelay {
    dir: Option<tempfile::TempDir>,
    root: PathBuf,
    line_port: u16,
    pickle_port: u16,
    process: ServerProcess,
}

impl CarbonRelay {
    /// Options; at least one destination is required.
    pub fn builder() -> CarbonRelayBuilder {
        CarbonRelayBuilder::default()
    }

    /// Plaintext receiver.
    pub fn line_addr(&self) -> SocketAddr {
        loopback(self.line_port)
    }

    /// Pickle receiver.
    pub fn pickle_addr(&self) -> SocketAddr {
        loopback(self.pickle_port)
    }

    /// The temporary directory.
    pub fn dir(&self) -> &Path {
        &self.root
    }

    /// The server log.
    pub fn log_path(&self) -> &Path {
        self.process.log_path()
    }

    /// The last `lines` lines of the server log.
    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }

    /// Sends plaintext lines (a newline added after each) to the relay.
    pub fn send_lines<I, S>(&self, lines: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        send_lines(self.line_addr(), lines);
    }

    /// Sends one pickle frame to the relay.
    pub fn send_pickle(&self, points: &[(&str, i64, f64)]) {
        send_tcp(self.pickle_addr(), &pickle_frame(points));
    }

    /// Stops the relay gracefully.
    pub fn stop(&mut self) {
        self.process.stop(SHUTDOWN_GRACE);
    }

    /// Kills the relay with SIGKILL.
    pub fn kill(&mut self) {
        self.process.kill();
        let _ = fs::remove_file(self.root.join("storage").join("carbon-relay-a.pid"));
    }

    /// Starts the relay again with the same ports.
    pub fn start_again(&mut self) {
        self.launch();
    }

    /// Whether the process is alive.
    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    fn launch(&mut self) {
        let ports = [self.line_addr(), self.pickle_addr()];
        launch(&mut self.process, &ports);
    }
}

impl Drop for CarbonRelay {
    fn drop(&mut self) {
        self.process.kill();
        process::keep_on_panic(&mut self.dir, &self.process);
    }
}

/// Options for [`CarbonAggregator`].
#[derive(Debug, Clone, Default)]
pub struct CarbonAggregatorBuilder {
    destinations: Vec<String>,
    rules: String,
    rewrite_rules: Option<String>,
    protocol: Option<String>,
    settings: Vec<(String, String)>,
}

impl CarbonAggregatorBuilder {
    /// A `host:port[:instance]` it relays to (its pickle receiver, unless
    /// [`CarbonAggregatorBuilder::destination_protocol`] says otherwise).
    #[must_use]
    pub fn destination(mut self, destination: &str) -> Self {
        self.destinations.push(destination.to_owned());
        self
    }

    /// The contents of `aggregation-rules.conf`.
    #[must_use]
    pub fn rules(mut self, rules: &str) -> Self {
        rules.clone_into(&mut self.rules);
        self
    }

    /// The contents of `rewrite-rules.conf` (`[pre]` / `[post]` sections).
    #[must_use]
    pub fn rewrite_rules(mut self, rules: &str) -> Self {
        self.rewrite_rules = Some(rules.to_owned());
        self
    }

    /// DESTINATION_PROTOCOL (`pickle`, carbon's default, or `line`).
    #[must_use]
    pub fn destination_protocol(mut self, protocol: &str) -> Self {
        self.protocol = Some(protocol.to_owned());
        self
    }

    /// Any other `[aggregator]` setting, e.g. `("MAX_AGGREGATION_INTERVALS", "5")`.
    #[must_use]
    pub fn setting(mut self, key: &str, value: &str) -> Self {
        self.settings.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Starts carbon-aggregator and waits until its line and pickle ports listen.
    ///
    /// # Panics
    /// When graphite-carbon is not installed or carbon-aggregator does not come up.
    pub fn start(self) -> CarbonAggregator {
        assert!(
            !self.destinations.is_empty(),
            "carbon-aggregator needs at least one destination"
        );
        let dir = process::temp_dir("carbon-aggregator");
        let root = dir.path().to_owned();
        let (line_port, pickle_port) = (free_port(), free_port());
        let mut settings = base_settings(&root, line_port, pickle_port);
        settings.set("DESTINATIONS", self.destinations.join(", "));
        settings.set("MAX_QUEUE_SIZE", 100_000);
        settings.set("LOG_AGGREGATOR_MISSES", "False");
        if let Some(protocol) = &self.protocol {
            settings.set("DESTINATION_PROTOCOL", protocol);
        }
        for (key, value) in &self.settings {
            settings.set(key, value);
        }
        let mut files = vec![("aggregation-rules.conf", self.rules.clone())];
        if let Some(rewrite) = &self.rewrite_rules {
            files.push(("rewrite-rules.conf", rewrite.clone()));
        }
        let process = prepare(
            "aggregator",
            &root,
            &settings,
            "[default]\npattern = .*\nretentions = 1s:1h\n",
            &files,
        );
        let mut aggregator = CarbonAggregator {
            dir: Some(dir),
            root,
            line_port,
            pickle_port,
            process,
        };
        let ports = [aggregator.line_addr(), aggregator.pickle_addr()];
        launch(&mut aggregator.process, &ports);
        aggregator
    }
}

/// A running carbon-aggregator (its rules files in its own conf directory), killed when
/// dropped.
#[derive(Debug)]
pub struct CarbonAggregator {
    dir: Option<tempfile::TempDir>,
    root: PathBuf,
    line_port: u16,
    pickle_port: u16,
    process: ServerProcess,
}

impl CarbonAggregator {
    pub fn builder() -> CarbonAggregatorBuilder {
        CarbonAggregatorBuilder::default()
    }

    pub fn line_addr(&self) -> SocketAddr {
        loopback(self.line_port)
    }

    pub fn pickle_addr(&self) -> SocketAddr {
        loopback(self.pickle_port)
    }

    /// The temporary directory (conf/ with the rules files, storage/, log).
    pub fn dir(&self) -> &Path {
        &self.root
    }

    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }

    pub fn send_lines<I, S>(&self, lines: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        send_lines(self.line_addr(), lines);
    }
}

impl Drop for CarbonAggregator {
    fn drop(&mut self) {
        self.process.kill();
        process::keep_on_panic(&mut self.dir, &self.process);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_whisper_fetch_json() {
        let text = "{\n    \"start\" : 100,\n    \"end\" : 104,\n    \"step\" : 1,\n    \
                    \"values\" : [null, 1.5, inf, -2.0]\n  }\n";
        let parsed = parse_whisper_json(text).unwrap();
        assert_eq!(parsed[0], (100, None));
        assert_eq!(parsed[1], (101, Some(1.5)));
        assert_eq!(parsed[2], (102, Some(f64::INFINITY)));
        assert_eq!(parsed[3], (103, Some(-2.0)));
        assert_eq!(
            parse_whisper_json("{\"start\" : 1, \"step\" : 60, \"values\" : []}").unwrap(),
            vec![]
        );
        assert_eq!(parse_whisper_json("{}").unwrap_err(), "no \"start\"");
    }

    #[test]
    fn settings_replace_by_key() {
        let mut settings = Settings::default();
        settings.set("line_receiver_port", 1);
        settings.set("LINE_RECEIVER_PORT", 2);
        settings.set("ENABLE_TAGS", "False");
        assert_eq!(
            settings.render("cache"),
            "[cache]\nLINE_RECEIVER_PORT = 2\nENABLE_TAGS = False\n"
        );
    }
}
