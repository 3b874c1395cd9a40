//! InfluxDB line protocol over UDP, as InfluxDB 1.x's `[[udp]]` input takes it: every
//! datagram holds whole lines, written to one `database` / `retention_policy`, with
//! timestamps in `precision`; points are gathered into batches of `batch_size` or what
//! arrived within `batch_timeout`, whichever comes first.
//!
//! One difference, on purpose: InfluxDB drops a whole datagram when one of its lines does not
//! parse; here the good lines go on, and each bad one is counted (`invalid_line`) and logged.

use std::{sync::Arc, time::Duration};

use serde::Deserialize;
use tokio::net::UdpSocket;

use super::ListenerCtx;
use crate::{
    config::ConfigError,
    output::influxdb::{Destination, Target},
    pipeline::{Batch, Wait},
    warn_limited,
};

/// `[listeners.line_udp]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LineUdpListener {
    /// UDP address; absent = no listener (InfluxDB's `bind-address`).
    pub udp: Option<String>,
    /// Where the points are written (InfluxDB's default is `udp`).
    pub database: String,
    /// Empty: the database's default retention policy.
    pub retention_policy: String,
    /// Unit of the timestamps: `ns` (default), `us`, `ms`, `s`, `m`, `h` (also `n`, `u`).
    pub precision: String,
    /// Points handed on together.
    pub batch_size: usize,
    /// A batch not yet full is handed on this long after its first point.
    #[serde(with = "humantime_serde")]
    pub batch_timeout: Duration,
    /// Largest datagram read; a longer one arrives cut and its cut line is refused.
    pub max_datagram_bytes: usize,
    /// SO_RCVBUF asked for (InfluxDB's `read-buffer`); the kernel caps it at
    /// net.core.rmem_max. 0 keeps the system default.
    pub recv_buffer_bytes: usize,
}

impl Default for LineUdpListener {
    fn default() -> Self {
        Self {
            udp: None,
            database: "udp".into(),
            retention_policy: String::new(),
            precision: "ns".into(),
            batch_size: 5000,
            batch_timeout: Duration::from_secs(1),
            max_datagram_bytes: 65536,
            recv_buffer_bytes: super::udp::DEFAULT_RECV_BUFFER,
        }
    }
}

impl LineUdpListener {
    fn precision_value(&self) -> Result<line_protocol::Precision, String> {
        let p = match self.precision.as_str() {
            "" | "n" => "ns",
            "u" => "us",
            other => other,
        };
        line_protocol::Precision::parse(p)
            .map_err(|e| format!("precision {:?}: {e}", self.precision))
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::invalid("listeners.line_udp", m));
        if let Err(e) = self.precision_value() {
            return bad(e);
        }
        if self.database.is_empty() {
            return bad("database must not be empty".into());
        }
        if self.batch_size == 0 || self.max_datagram_bytes == 0 {
            return bad("batch_size and max_datagram_bytes must be above 0".into());
        }
        if self.batch_timeout.is_zero() {
            return bad("batch_timeout must be above 0".into());
        }
        Ok(())
    }
}

fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// Receives datagrams until the listener stops; the batch in hand is handed on first.
pub async fn udp(socket: Arc<UdpSocket>, ctx: Arc<ListenerCtx>, cfg: LineUdpListener) {
    let precision = cfg
        .precision_value()
        .unwrap_or(line_protocol::Precision::Nanoseconds);
    let target = Target::Explicit(Destination::new(&cfg.database, &cfg.retention_policy));
    let max_datagram = cfg.max_datagram_bytes;
    let mut buf = vec![0u8; max_datagram + 1];
    let mut line = Vec::with_capacity(256);
    let mut batch = Batch::new(ctx.name);
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        let timer = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        let first = tokio::select! {
            r = socket.recv_from(&mut buf) => Some(r),
            _ = timer => None,
            _ = ctx.stop_accepting.cancelled() => {
                submit(&ctx, &mut batch, &target).await;
                return;
            }
        };
        if let Some(first) = first {
            let pipeline = ctx.pipeline();
            let mut next = first.map(|(n, _)| n);
            // Drain what the socket already holds, up to one batch.
            loop {
                match next {
                    Ok(n) => datagram(
                        &ctx,
                        &pipeline,
                        &mut batch,
                        &buf[..n],
                        max_datagram,
                        precision,
                        &mut line,
                    ),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => {
                        ctx.reject("read_error", 1);
                        warn_limited!(ctx.log_limit, listener = ctx.name, "recv failed: {e}");
                    }
                }
                if batch.len() >= cfg.batch_size {
                    break;
                }
                next = socket.try_recv_from(&mut buf).map(|(n, _)| n);
            }
            if !batch.is_empty() && deadline.is_none() {
                deadline = Some(tokio::time::Instant::now() + cfg.batch_timeout);
            }
            if batch.len() < cfg.batch_size {
                continue;
            }
        }
        deadline = None;
        submit(&ctx, &mut batch, &target).await;
    }
}

async fn submit(ctx: &ListenerCtx, batch: &mut Batch, target: &Target) {
    let points = batch.len();
    if points == 0 {
        return;
    }
    ctx.received.inc_by(points as u64);
    let pipeline = ctx.pipeline();
    batch.submit(ctx, &pipeline, target, Wait::Partial).await;
}

/// One datagram's lines into the batch; a bad line is counted and logged, the others go on.
fn datagram(
    ctx: &ListenerCtx,
    pipeline: &crate::pipeline::Pipeline,
    batch: &mut Batch,
    data: &[u8],
    max_datagram: usize,
    precision: line_protocol::Precision,
    line: &mut Vec<u8>,
) {
    let data = if data.len() > max_datagram {
        ctx.reject("truncated", 1);
        warn_limited!(
            ctx.log_limit,
            listener = ctx.name,
            reason = "truncated",
            "rejected: datagram longer than max_datagram_bytes ({max_datagram}): its last line was cut"
        );
        let whole = memchr::memrchr(b'\n', &data[..max_datagram]).map_or(0, |i| i + 1);
        &data[..whole]
    } else {
        data
    };
    let Ok(text) = std::str::from_utf8(data) else {
        ctx.reject("not_utf8", 1);
        warn_limited!(
            ctx.log_limit,
            listener = ctx.name,
            reason = "not_utf8",
            "rejected: a datagram that is not UTF-8"
        );
        return;
    };
    let now = now_nanos();
    for parsed in line_protocol::parse_lines(text).precision(precision) {
        let added = parsed.map_err(|e| e.to_string()).and_then(|p| {
            line.clear();
            let ns =
                super::http::append_point(&p, precision, now, line).map_err(|e| e.to_string())?;
            batch.add_line_protocol(pipeline, &p, line, ns);
            Ok(())
        });
        if let Err(e) = added {
            ctx.reject("invalid_line", 1);
            warn_limited!(
                ctx.log_limit,
                listener = ctx.name,
                reason = "invalid_line",
                "rejected: {e}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn load(text: &str) -> Result<Config, String> {
        let c: Config = toml::from_str(text).map_err(|e| e.to_string())?;
        c.validate().map_err(|e| e.to_string())?;
        Ok(c)
    }

    #[test]
    fn keys_and_defaults_as_influxdbs_udp_input() {
        let c = load("[listeners.line_udp]\nudp = \"127.0.0.1:8089\"\n").unwrap();
        let l = &c.listeners.line_udp;
        assert_eq!(l.database, "udp");
        assert_eq!(l.batch_size, 5000);
        assert_eq!(
            l.precision_value().unwrap(),
            line_protocol::Precision::Nanoseconds
        );
        for (p, want) in [
            ("s", line_protocol::Precision::Seconds),
            ("u", line_protocol::Precision::Microseconds),
            ("n", line_protocol::Precision::Nanoseconds),
        ] {
            let c = load(&format!("[listeners.line_udp]\nprecision = \"{p}\"\n")).unwrap();
            assert_eq!(c.listeners.line_udp.precision_value().unwrap(), want);
        }
        assert!(load("[listeners.line_udp]\nprecision = \"weeks\"\n")
            .unwrap_err()
            .contains("precision"));
        assert!(load("[listeners.line_udp]\nbatch_size = 0\n").is_err());
        assert!(load("[listeners.line_udp]\nnope = 1\n").is_err());
    }

    #[test]
    fn one_udp_address_one_listener() {
        let e = load(
            "[listeners.line_udp]\nudp = \"127.0.0.1:8089\"\n[listeners.statsd]\nudp = \"127.0.0.1:8089\"\n",
        )
        .unwrap_err();
        assert!(e.contains("one UDP address, one listener"), "{e}");
    }

    #[test]
    fn statsd_tcp_and_the_receive_buffer_alias() {
        let c = load(
            "[listeners.statsd]\ntcp = \"127.0.0.1:8125\"\nudp = \"127.0.0.1:8125\"\nrecv_buffer_bytes = 1024\n",
        )
        .unwrap();
        assert_eq!(c.listeners.statsd.udp_receive_buffer, 1024);
        assert_eq!(c.listeners.statsd.tcp.as_deref(), Some("127.0.0.1:8125"));
        let e = load("[listeners.statsd]\ntcp = \"127.0.0.1:2003\"\n[listeners.plaintext]\ntcp = \"127.0.0.1:2003\"\n")
            .unwrap_err();
        assert!(e.contains("one TCP address"), "{e}");
        let c =
            load("[listeners.http]\naddress = \"\"\n[telemetry]\naddress = \"127.0.0.1:9108\"\n")
                .unwrap();
        assert_eq!(c.listeners.http.address, None);
        assert!(load("[telemetry]\ninterval = \"10ms\"\n").is_err());
        assert!(load("[telemetry]\ngraphite_prefix = \"a..b.\"\n").is_err());
    }
}
