//! VictoriaMetrics (Debian `victoria-metrics`), a real store that takes InfluxDB line protocol
//! on `/write` and `/api/v2/write`: started in its own temporary directory on a free loopback
//! port, read back through its export API.
//!
//! It names a series `<measurement>_<field>` with the tags as labels, keeps timestamps in
//! milliseconds, and makes what it took searchable within about a second (its in-memory
//! buffers are flushed on a timer), so readers wait with [`VictoriaMetrics::wait_for_series`].

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use crate::http::{form_urlencode, http_post, http_request};
use crate::net::{free_port, loopback};
use crate::process::{self, require_binary, ServerProcess};
use crate::wait::eventually;

const STARTUP: Duration = Duration::from_secs(30);

/// One exported series: its labels and its samples (milliseconds, value), oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// `__name__` and the tags.
    pub labels: Vec<(String, String)>,
    pub samples: Vec<(i64, f64)>,
}

impl Series {
    /// A label's value.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A running VictoriaMetrics single-node server.
#[derive(Debug)]
pub struct VictoriaMetrics {
    dir: Option<tempfile::TempDir>,
    port: u16,
    process: ServerProcess,
}

impl VictoriaMetrics {
    /// Starts it and waits until `/health` answers.
    ///
    /// # Panics
    /// When `victoria-metrics` is not installed or does not come up, with its log.
    pub fn start() -> VictoriaMetrics {
        let binary = require_binary("victoria-metrics", "victoria-metrics");
        let dir = process::temp_dir("victoria-metrics");
        let root: PathBuf = dir.path().to_owned();
        let port = free_port();
        let mut process = ServerProcess::new(
            "victoria-metrics",
            binary,
            &root,
            root.join("victoria-metrics.log"),
        );
        process
            .arg(format!("-storageDataPath={}", root.join("data").display()))
            .arg(format!("-httpListenAddr={}", loopback(port)))
            .arg("-retentionPeriod=100y")
            .arg("-loggerLevel=INFO");
        process.spawn();
        let health = format!("http://{}/health", loopback(port));
        process.wait_until("victoria-metrics /health", STARTUP, || {
            http_request("GET", &health, &[], &[]).is_ok_and(|r| r.status == 200)
        });
        VictoriaMetrics {
            dir: Some(dir),
            port,
            process,
        }
    }

    /// `http://127.0.0.1:<port>`, for an output's `url`.
    pub fn url(&self) -> String {
        format!("http://{}", loopback(self.port))
    }

    /// Every series whose name matches the regex `name_regex`, through `/api/v1/export`.
    ///
    /// # Panics
    /// When the export does not answer 200.
    pub fn export(&self, name_regex: &str) -> Vec<Series> {
        let selector = format!("{{__name__=~\"{name_regex}\"}}");
        let body = form_urlencode(&[("match[]", selector.as_str())]);
        let url = format!("{}/api/v1/export", self.url());
        let resp = http_post(&url, "application/x-www-form-urlencoded", body.as_bytes())
            .unwrap_or_else(|e| panic!("POST {url}: {e}\n{}", self.process.describe_log()));
        assert_eq!(resp.status, 200, "export failed: {}", resp.text());
        let mut out: Vec<Series> = resp
            .text()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let v: Value = serde_json::from_str(l).expect("export lines are JSON");
                let mut labels: Vec<(String, String)> = v["metric"]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                            .collect()
                    })
                    .unwrap_or_default();
                labels.sort();
                let values = v["values"].as_array().cloned().unwrap_or_default();
                let times = v["timestamps"].as_array().cloned().unwrap_or_default();
                let mut samples: Vec<(i64, f64)> = times
                    .iter()
                    .zip(&values)
                    .map(|(t, x)| (t.as_i64().unwrap_or(0), x.as_f64().unwrap_or(f64::NAN)))
                    .collect();
                samples.sort_by_key(|s| s.0);
                Series { labels, samples }
            })
            .collect();
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        out
    }

    /// Waits (up to 30 s) until the series matching `name_regex` hold at least `samples`
    /// samples each, `series` of them, and returns them.
    ///
    /// # Panics
    /// When they do not, with what is there and the server's log.
    pub fn wait_for_series(&self, name_regex: &str, series: usize, samples: usize) -> Vec<Series> {
        eventually(Duration::from_secs(30), || {
            let found = self.export(name_regex);
            if found.len() >= series && found.iter().all(|s| s.samples.len() >= samples) {
                Ok(found)
            } else {
                Err(format!(
                    "{} series (want {series} with {samples} samples each): {found:?}\n{}",
                    found.len(),
                    self.process.describe_log()
                ))
            }
        })
    }
}

impl Drop for VictoriaMetrics {
    fn drop(&mut self) {
        self.process.kill();
        process::keep_on_panic(&mut self.dir, &self.process);
    }
}
