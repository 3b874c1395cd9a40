//! A real InfluxDB 1.x (`influxd`) in a temporary directory on free loopback ports.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::http::{form_urlencode, http_request, HttpResponse};
use crate::net::{free_port, loopback, send_lines, tcp_is_listening};
use crate::process::{self, require_binary, ServerProcess, POLL};

/// How long influxd may take to answer `/ping` (it opens its shards first; on a loaded 2-core
/// CI machine that can take seconds).
const STARTUP: Duration = Duration::from_secs(30);
/// SIGTERM grace: influxd 1.6 takes about 2 s to close its services.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// InfluxDB's own Graphite input (`[[graphite]]`), the reference that fluxgate's
/// graphite→influx translation is compared against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphiteService {
    /// Database the service writes into; InfluxDB creates it on the first batch.
    pub database: String,
    /// Joins measurement (and repeated tag) segments; InfluxDB's default is `.`.
    pub separator: String,
    /// Template lines in InfluxDB syntax, e.g. `servers.* .host.resource.measurement*`.
    pub templates: Vec<String>,
    /// Global `key=value` tags added where a point does not already have the key.
    pub tags: Vec<String>,
}

impl GraphiteService {
    /// A service writing into `database`, separator `.`, no templates (InfluxDB's default
    /// template `measurement*` applies) and no tags.
    pub fn new(database: &str) -> Self {
        GraphiteService {
            database: database.to_owned(),
            separator: ".".to_owned(),
            templates: Vec::new(),
            tags: Vec::new(),
        }
    }

    /// Sets the separator.
    #[must_use]
    pub fn separator(mut self, separator: &str) -> Self {
        separator.clone_into(&mut self.separator);
        self
    }

    /// Adds a template line.
    #[must_use]
    pub fn template(mut self, template: &str) -> Self {
        self.templates.push(template.to_owned());
        self
    }

    /// Adds a global `key=value` tag.
    #[must_use]
    pub fn tag(mut self, tag: &str) -> Self {
        self.tags.push(tag.to_owned());
        self
    }
}

/// Options for [`InfluxDb`].
#[derive(Debug, Clone, Default)]
pub struct InfluxDbBuilder {
    graphite: Option<GraphiteService>,
    admin: Option<(String, String)>,
    extra_config: String,
    https: Option<Https>,
}

/// InfluxDB's own HTTPS (`[http] https-enabled`): its certificate and key, and the CA the
/// fixture trusts when it talks to it.
#[derive(Debug, Clone)]
struct Https {
    certificate: PathBuf,
    private_key: PathBuf,
    ca: PathBuf,
}

impl InfluxDbBuilder {
    /// Serves the HTTP API over HTTPS only (`https-enabled = true`) with this certificate
    /// chain and key (PEM files); the fixture's own requests then go through `curl
    /// --cacert ca`, and [`InfluxDb::url`] is `https://127.0.0.1:<port>`.
    #[must_use]
    pub fn https(mut self, certificate: &Path, private_key: &Path, ca: &Path) -> Self {
        self.https = Some(Https {
            certificate: certificate.to_owned(),
            private_key: private_key.to_owned(),
            ca: ca.to_owned(),
        });
        self
    }

    /// Enables InfluxDB's Graphite TCP input on a free port.
    #[must_use]
    pub fn graphite(mut self, service: GraphiteService) -> Self {
        self.graphite = Some(service);
        self
    }

    /// Turns authentication on and creates this admin user; the fixture's own requests
    /// (`query`, `write`, ...) then authenticate as it.
    #[must_use]
    pub fn admin(mut self, user: &str, password: &str) -> Self {
        self.admin = Some((user.to_owned(), password.to_owned()));
        self
    }

    /// Appends raw TOML to the generated influxd config (e.g. `[http]` keys are already
    /// taken, but a `[[udp]]` section is not).
    #[must_use]
    pub fn extra_config(mut self, toml: &str) -> Self {
        self.extra_config.push_str(toml);
        self.extra_config.push('\n');
        self
    }

    /// Writes the config, starts influxd and waits until `/ping` answers (and the Graphite
    /// port accepts connections, when enabled).
    ///
    /// # Panics
    /// When influxd is not installed or does not come up, with the end of its log.
    pub fn start(self) -> InfluxDb {
        let binary = require_binary("influxd", "influxdb");
        let dir = process::temp_dir("influxdb");
        let root = dir.path().to_owned();
        let http_port = free_port();
        let rpc_port = free_port();
        let graphite = self.graphite.map(|service| (service, free_port()));
        let config_path = root.join("influxdb.conf");
        process::write_file(
            &config_path,
            &render_config(
                &root,
                http_port,
                rpc_port,
                graphite.as_ref(),
                self.admin.is_some(),
                self.https.as_ref(),
                &self.extra_config,
            ),
        );
        let mut process = ServerProcess::new("influxd", binary, &root, root.join("influxd.log"));
        process.arg("run").arg("-config").arg(&config_path);
        let mut influx = InfluxDb {
            dir: Some(dir),
            root,
            http_port,
            graphite,
            admin: self.admin,
            https_ca: self.https.map(|h| h.ca),
            process,
        };
        influx.launch();
        if let Some((user, password)) = influx.admin.clone() {
            // With auth on and no users yet, InfluxDB lets anyone create the first admin.
            let statement = format!(
                "CREATE USER {} WITH PASSWORD {} WITH ALL PRIVILEGES",
                quote_ident(&user),
                quote_string(&password)
            );
            let response = influx.post_query("", &statement, false);
            assert_eq!(
                response.status,
                200,
                "creating the admin user failed: {}",
                response.text()
            );
        }
        influx
    }
}

/// A point as InfluxDB returns it from `SELECT ... GROUP BY *`: tags and fields apart, time in
/// nanoseconds, null fields (columns of other field sets) left out.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// Measurement name.
    pub measurement: String,
    /// Tag set.
    pub tags: BTreeMap<String, String>,
    /// Timestamp, nanoseconds since the epoch.
    pub time: i64,
    /// Field values as InfluxDB's JSON has them. Beware: the JSON does not tell floats from
    /// integers (a float `1.0` comes back as `1`); use [`InfluxDb::field_types`] for types.
    pub fields: BTreeMap<String, Value>,
}

/// A running `influxd`, killed when dropped.
#[derive(Debug)]
pub struct InfluxDb {
    dir: Option<tempfile::TempDir>,
    root: PathBuf,
    http_port: u16,
    graphite: Option<(GraphiteService, u16)>,
    admin: Option<(String, String)>,
    /// With HTTPS: the CA its certificate is checked against.
    https_ca: Option<PathBuf>,
    process: ServerProcess,
}

impl InfluxDb {
    /// Starts an InfluxDB with default options.
    pub fn start() -> InfluxDb {
        InfluxDbBuilder::default().start()
    }

    /// Options: Graphite input, authentication, extra config.
    pub fn builder() -> InfluxDbBuilder {
        InfluxDbBuilder::default()
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        let scheme = if self.https_ca.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.addr())
    }

    /// One request, over HTTPS (with curl) when the server serves HTTPS.
    fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<HttpResponse> {
        match &self.https_ca {
            None => http_request(method, url, headers, body),
            Some(ca) => crate::http::curl_request(method, url, headers, body, Some(ca)),
        }
    }

    /// The HTTP API address.
    pub fn addr(&self) -> SocketAddr {
        loopback(self.http_port)
    }

    /// The Graphite TCP input's address.
    ///
    /// # Panics
    /// When the Graphite input was not enabled with [`InfluxDbBuilder::graphite`].
    pub fn graphite_addr(&self) -> SocketAddr {
        let (_, port) = self
            .graphite
            .as_ref()
            .expect("the Graphite input is not enabled: use InfluxDb::builder().graphite(..)");
        loopback(*port)
    }

    /// The temporary directory holding config, data and log.
    pub fn dir(&self) -> &Path {
        &self.root
    }

    /// The server log (stdout and stderr of every start).
    pub fn log_path(&self) -> &Path {
        self.process.log_path()
    }

    /// The last `lines` lines of the server log.
    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }

    /// Runs InfluxQL `q` against database `db` (empty for none) and returns the response JSON
    /// (`{"results": [...]}`) as is, statement errors included. Times come back as integer
    /// nanoseconds (`epoch=ns`).
    ///
    /// # Panics
    /// When the HTTP request fails or the status is not 200.
    pub fn query(&self, db: &str, q: &str) -> Value {
        let response = self.post_query(db, q, true);
        assert_eq!(
            response.status,
            200,
            "query {q:?} on {db:?} failed: {}",
            response.text()
        );
        response.json()
    }

    /// `CREATE DATABASE "<db>"`.
    pub fn create_database(&self, db: &str) {
        let statement = format!("CREATE DATABASE {}", quote_ident(db));
        check_statements(&self.query("", &statement), &statement);
    }

    /// `SHOW DATABASES`, in creation order.
    pub fn databases(&self) -> Vec<String> {
        let json = self.query("", "SHOW DATABASES");
        check_statements(&json, "SHOW DATABASES");
        all_series(&json)
            .flat_map(rows)
            .filter_map(|row| row.first()?.as_str().map(str::to_owned))
            .collect()
    }

    /// Writes line protocol with nanosecond timestamps through `/write`.
    ///
    /// # Panics
    /// Unless InfluxDB answers 204, quoting its error.
    pub fn write(&self, db: &str, lines: &str) {
        let response = self.request(
            "POST",
            &format!(
                "/write?{}",
                form_urlencode(&[("db", db), ("precision", "ns")])
            ),
            lines.as_bytes(),
        );
        assert_eq!(
            response.status,
            204,
            "write to {db:?} failed: {}",
            response.text()
        );
    }

    /// Sends a request to this InfluxDB (`path` includes the query string) with the fixture's
    /// credentials when authentication is on, and returns whatever it answered.
    ///
    /// # Panics
    /// When the HTTP exchange itself fails.
    pub fn request(&self, method: &str, path: &str, body: &[u8]) -> HttpResponse {
        let auth = self.basic_auth();
        let mut headers = vec![("Content-Type", "text/plain; charset=utf-8")];
        if let Some(auth) = &auth {
            headers.push(("Authorization", auth.as_str()));
        }
        let url = format!("{}{path}", self.url());
        self.send(method, &url, &headers, body)
            .unwrap_or_else(|err| panic!("{method} {url} failed: {err}\n{}", self.describe()))
    }

    /// Runs a `SELECT` and flattens the result into points. Tags are only told apart from
    /// fields when the query has `GROUP BY *` (or groups by the tag).
    ///
    /// # Panics
    /// On a statement error.
    pub fn select(&self, db: &str, q: &str) -> Vec<Point> {
        let json = self.query(db, q);
        check_statements(&json, q);
        points_from_json(&json)
    }

    /// Every point of every measurement in `db`, sorted by measurement, tags and time.
    ///
    /// # Panics
    /// When the database does not exist.
    pub fn points(&self, db: &str) -> Vec<Point> {
        let mut points = self.select(db, "SELECT * FROM /.*/ GROUP BY *");
        sort_points(&mut points);
        points
    }

    /// Polls until `db` holds exactly `n` points in total and returns them (sorted by
    /// measurement, tags, time).
    ///
    /// # Panics
    /// At once when there are more than `n` (a duplicate is never "still arriving"), and after
    /// `timeout` when there are fewer.
    pub fn wait_exact_points(&self, db: &str, n: usize, timeout: Duration) -> Vec<Point> {
        crate::wait::eventually(timeout, || {
            let json = self.query(db, "SELECT * FROM /.*/ GROUP BY *");
            if json["results"][0].get("error").is_some() {
                return Err(format!("{db}: {}", json["results"][0]["error"]));
            }
            let points = self.points(db);
            assert!(
                points.len() <= n,
                "{db} holds {} points, expected {n}: {points:#?}",
                points.len()
            );
            if points.len() == n {
                Ok(points)
            } else {
                Err(format!("{db} holds {} of {n} points", points.len()))
            }
        })
    }

    /// Waits until `db` exists and holds at least `n` points, and returns them all.
    ///
    /// # Panics
    /// After `timeout`, showing what is there and the end of the server log.
    pub fn wait_for_points(&self, db: &str, n: usize, timeout: Duration) -> Vec<Point> {
        let deadline = Instant::now() + timeout;
        let q = "SELECT * FROM /.*/ GROUP BY *";
        // influxd can answer a point before its series' tags are in the index (the point
        // then shows without tags): an answer counts once the next one agrees with it.
        let mut previous: Option<Vec<Point>> = None;
        loop {
            let json = self.query(db, q);
            let error = statement_error(&json);
            if error.is_none() {
                let mut points = points_from_json(&json);
                if points.len() >= n {
                    sort_points(&mut points);
                    if previous.as_ref() == Some(&points) {
                        return points;
                    }
                    previous = Some(points);
                    thread::sleep(POLL);
                    continue;
                }
            }
            if Instant::now() >= deadline {
                let found = match error {
                    Some(error) => format!("error: {error}"),
                    None => format!("{} point(s): {:#?}", points_from_json(&json).len(), {
                        let mut points = points_from_json(&json);
                        sort_points(&mut points);
                        points
                    }),
                };
                panic!(
                    "timed out after {timeout:?} waiting for {n} point(s) in database {db:?}; \
                     found {found}\n{}",
                    self.describe()
                );
            }
            thread::sleep(POLL);
        }
    }

    /// `SHOW FIELD KEYS FROM "<measurement>"`: field name to InfluxDB type (`float`,
    /// `integer`, `string`, `boolean`, `unsigned`).
    pub fn field_types(&self, db: &str, measurement: &str) -> BTreeMap<String, String> {
        let q = format!("SHOW FIELD KEYS FROM {}", quote_ident(measurement));
        let json = self.query(db, &q);
        check_statements(&json, &q);
        let mut types = BTreeMap::new();
        for series in all_series(&json) {
            for row in rows(series) {
                if let [Value::String(name), Value::String(kind)] = row.as_slice() {
                    types.insert(name.clone(), kind.clone());
                }
            }
        }
        types
    }

    /// Sends Graphite plaintext lines (a newline is added after each) to InfluxDB's Graphite
    /// input. InfluxDB batches them (batch timeout 50 ms here); use
    /// [`InfluxDb::wait_for_points`] to see them land.
    pub fn send_graphite_lines<I, S>(&self, lines: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        send_lines(self.graphite_addr(), lines);
    }

    /// Stops influxd gracefully (SIGTERM, SIGKILL after 10 s): an upstream outage. Data,
    /// config and ports are kept for [`InfluxDb::start_again`].
    pub fn stop(&mut self) {
        self.process.stop(SHUTDOWN_GRACE);
    }

    /// Kills influxd with SIGKILL: a crash. Written data survives (the WAL is fsynced).
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Starts influxd again on the same ports with the same data.
    ///
    /// # Panics
    /// When it is still running or does not come up.
    pub fn start_again(&mut self) {
        self.launch();
    }

    /// Whether the influxd process is alive.
    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    fn launch(&mut self) {
        self.process.spawn();
        let ping = format!("{}/ping", self.url());
        let graphite = self.graphite.as_ref().map(|(_, port)| loopback(*port));
        let https = self.https_ca.is_some();
        let addr = self.addr();
        let ca = self.https_ca.clone();
        self.process.wait_until("influxd /ping", STARTUP, || {
            // Over HTTPS, curl runs only once the port listens: a process per poll is dear.
            let answered = if https {
                tcp_is_listening(addr)
                    && crate::http::curl_request("GET", &ping, &[], &[], ca.as_deref())
                        .is_ok_and(|r| r.status == 204)
            } else {
                http_request("GET", &ping, &[], &[]).is_ok_and(|r| r.status == 204)
            };
            answered && graphite.is_none_or(tcp_is_listening)
        });
    }

    fn post_query(&self, db: &str, q: &str, authenticate: bool) -> HttpResponse {
        let mut params = vec![("q", q), ("epoch", "ns")];
        if !db.is_empty() {
            params.push(("db", db));
        }
        let body = form_urlencode(&params);
        let auth = if authenticate {
            self.basic_auth()
        } else {
            None
        };
        let mut headers = vec![("Content-Type", "application/x-www-form-urlencoded")];
        if let Some(auth) = &auth {
            headers.push(("Authorization", auth.as_str()));
        }
        let url = format!("{}/query", self.url());
        self.send("POST", &url, &headers, body.as_bytes())
            .unwrap_or_else(|err| panic!("POST {url} ({q}) failed: {err}\n{}", self.describe()))
    }

    fn basic_auth(&self) -> Option<String> {
        self.admin
            .as_ref()
            .map(|(user, password)| format!("Basic {}", base64(&format!("{user}:{password}"))))
    }

    fn describe(&self) -> String {
        self.process.describe_log()
    }
}

impl Drop for InfluxDb {
    fn drop(&mut self) {
        self.process.kill();
        process::keep_on_panic(&mut self.dir, &self.process);
    }
}

fn render_config(
    root: &Path,
    http_port: u16,
    rpc_port: u16,
    graphite: Option<&(GraphiteService, u16)>,
    auth: bool,
    https: Option<&Https>,
    extra: &str,
) -> String {
    let https_settings = match https {
        None => "  https-enabled = false\n".to_owned(),
        Some(h) => format!(
            "  https-enabled = true\n  https-certificate = {}\n  https-private-key = {}\n",
            toml_string(&h.certificate.display().to_string()),
            toml_string(&h.private_key.display().to_string()),
        ),
    };
    let dir = |name: &str| toml_string(&root.join(name).display().to_string());
    // Everything that would listen on a fixed port or do background work the tests do not
    // want is pinned or switched off; logs stay at warn, but the HTTP access log is on, as it
    // is the first thing to read when a write did not land.
    let mut config = format!(
        r#"reporting-disabled = true
bind-address = "127.0.0.1:{rpc_port}"

[meta]
  dir = {meta}
  retention-autocreate = true
  logging-enabled = false

[data]
  dir = {data}
  wal-dir = {wal}
  wal-fsync-delay = "0s"
  index-version = "inmem"
  query-log-enabled = false
  trace-logging-enabled = false

[monitor]
  store-enabled = false

[subscriber]
  enabled = false

[continuous_queries]
  enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:{http_port}"
  auth-enabled = {auth}
  log-enabled = true
  pprof-enabled = false
{https_settings}
[logging]
  level = "warn"
  suppress-logo = true
"#,
        meta = dir("meta"),
        data = dir("data"),
        wal = dir("wal"),
    );
    if let Some((service, port)) = graphite {
        let list = |items: &[String]| {
            items
                .iter()
                .map(|item| toml_string(item))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = write!(
            config,
            r#"
[[graphite]]
  enabled = true
  bind-address = "127.0.0.1:{port}"
  protocol = "tcp"
  database = {database}
  batch-size = 1000
  batch-pending = 10
  batch-timeout = "50ms"
  separator = {separator}
  templates = [{templates}]
  tags = [{tags}]
"#,
            database = toml_string(&service.database),
            separator = toml_string(&service.separator),
            templates = list(&service.templates),
            tags = list(&service.tags),
        );
    }
    config.push_str(extra);
    config
}

/// A TOML basic string.
fn toml_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// An InfluxQL identifier in double quotes.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('\\', "\\\\").replace('"', "\\\""))
}

/// An InfluxQL string literal in single quotes.
fn quote_string(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
}

fn base64(text: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = text.as_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn results(json: &Value) -> &[Value] {
    json.get("results")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn statement_error(json: &Value) -> Option<String> {
    if let Some(error) = json.get("error").and_then(Value::as_str) {
        return Some(error.to_owned());
    }
    results(json)
        .iter()
        .find_map(|result| result.get("error").and_then(Value::as_str))
        .map(str::to_owned)
}

fn check_statements(json: &Value, q: &str) {
    if let Some(error) = statement_error(json) {
        panic!("InfluxQL {q:?} failed: {error}");
    }
}

fn all_series(json: &Value) -> impl Iterator<Item = &Value> {
    results(json).iter().flat_map(|result| {
        result
            .get("series")
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice)
    })
}

fn rows(series: &Value) -> impl Iterator<Item = &Vec<Value>> {
    series
        .get("values")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice)
        .iter()
        .filter_map(Value::as_array)
}

fn points_from_json(json: &Value) -> Vec<Point> {
    let mut points = Vec::new();
    for series in all_series(json) {
        let measurement = series
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let tags: BTreeMap<String, String> = series
            .get("tags")
            .and_then(Value::as_object)
            .map(|tags| {
                tags.iter()
                    .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
                    // GROUP BY * reports an absent tag as "".
                    .filter(|(_, v)| !v.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let columns: Vec<&str> = series
            .get("columns")
            .and_then(Value::as_array)
            .map(|columns| columns.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        for row in rows(series) {
            let mut point = Point {
                measurement: measurement.clone(),
                tags: tags.clone(),
                time: 0,
                fields: BTreeMap::new(),
            };
            for (column, value) in columns.iter().zip(row) {
                if *column == "time" {
                    point.time = value.as_i64().unwrap_or_default();
                } else if !value.is_null() {
                    point.fields.insert((*column).to_owned(), value.clone());
                }
            }
            if !point.fields.is_empty() {
                points.push(point);
            }
        }
    }
    points
}

fn sort_points(points: &mut [Point]) {
    points
        .sort_by(|a, b| (&a.measurement, &a.tags, a.time).cmp(&(&b.measurement, &b.tags, b.time)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(base64(""), "");
        assert_eq!(base64("f"), "Zg==");
        assert_eq!(base64("fo"), "Zm8=");
        assert_eq!(base64("foo"), "Zm9v");
        assert_eq!(base64("root:root"), "cm9vdDpyb290");
    }

    #[test]
    fn quoting() {
        assert_eq!(quote_ident(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(quote_string("it's"), r"'it\'s'");
        assert_eq!(toml_string("a\"b\\c\n"), r#""a\"b\\c\n""#);
    }

    #[test]
    fn config_has_graphite_section_with_escaped_templates() {
        let service = GraphiteService::new("graphite")
            .separator("_")
            .template("servers.* .host.measurement*")
            .tag("source=graphite");
        let config = render_config(Path::new("/t"), 1, 2, Some(&(service, 3)), false, None, "");
        assert!(
            config.contains("bind-address = \"127.0.0.1:2\""),
            "{config}"
        );
        assert!(
            config.contains("bind-address = \"127.0.0.1:1\""),
            "{config}"
        );
        assert!(config.contains("dir = \"/t/meta\""), "{config}");
        assert!(config.contains(
            "  bind-address = \"127.0.0.1:3\"\n  protocol = \"tcp\"\n  database = \"graphite\""
        ));
        assert!(config.contains("  separator = \"_\"\n  templates = [\"servers.* .host.measurement*\"]\n  tags = [\"source=graphite\"]\n"));
    }

    #[test]
    fn flattens_grouped_series() {
        let json = json!({"results": [{"statement_id": 0, "series": [
            {"name": "cpu", "tags": {"host": "a", "dc": ""},
             "columns": ["time", "value", "other"],
             "values": [[1, 0.5, null], [2, null, null]]},
            {"name": "mem", "columns": ["time", "free"], "values": [[3, 7]]}
        ]}]});
        let points = points_from_json(&json);
        assert_eq!(
            points,
            vec![
                Point {
                    measurement: "cpu".into(),
                    tags: [("host".to_owned(), "a".to_owned())].into(),
                    time: 1,
                    fields: [("value".to_owned(), json!(0.5))].into(),
                },
                Point {
                    measurement: "mem".into(),
                    tags: BTreeMap::new(),
                    time: 3,
                    fields: [("free".to_owned(), json!(7))].into(),
                },
            ]
        );
    }

    #[test]
    fn finds_statement_errors() {
        let json = json!({"results": [{"statement_id": 0, "error": "database not found: x"}]});
        assert_eq!(
            statement_error(&json).as_deref(),
            Some("database not found: x")
        );
        assert_eq!(
            statement_error(&json!({"results": [{"statement_id": 0}]})),
            None
        );
    }
}
