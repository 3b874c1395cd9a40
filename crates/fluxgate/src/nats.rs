//! What the NATS output and the NATS listener share: how to reach a NATS server (servers,
//! credentials, TLS) and how a batch travels as a JetStream message.
//!
//! A batch is one message: its body is the points, one per line, in the format the
//! `Fluxgate-Format` header names (`line_protocol` or `graphite`), and `Fluxgate-Db` /
//! `Fluxgate-Rp` carry the database and retention policy an HTTP write named (absent for
//! Graphite-origin points, which go where the deliverer's outputs send such points).
//! `Nats-Msg-Id` makes a publish retried after a lost acknowledgement a duplicate the stream
//! drops (within its duplicate window).

use std::{path::PathBuf, time::Duration};

use crate::output::{Destination, Target};

/// Header naming the body's format.
pub const FORMAT_HEADER: &str = "Fluxgate-Format";
/// Header with the database of an HTTP write.
pub const DB_HEADER: &str = "Fluxgate-Db";
/// Header with the retention policy of an HTTP write.
pub const RP_HEADER: &str = "Fluxgate-Rp";
/// Header with the number of points in the body.
pub const POINTS_HEADER: &str = "Fluxgate-Points";

/// The wire format of a message body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// InfluxDB line protocol, nanosecond timestamps.
    #[default]
    LineProtocol,
    /// Graphite plaintext, `path value timestamp`.
    Graphite,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::LineProtocol => "line_protocol",
            Format::Graphite => "graphite",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "line_protocol" => Some(Format::LineProtocol),
            "graphite" => Some(Format::Graphite),
            _ => None,
        }
    }
}

/// The headers of a batch bound for `target`.
pub fn headers(format: Format, target: &Target, points: usize) -> async_nats::HeaderMap {
    let mut h = async_nats::HeaderMap::new();
    h.insert(FORMAT_HEADER, format.as_str());
    if let Target::Explicit(d) = target {
        h.insert(DB_HEADER, &*d.db);
        if !d.rp.is_empty() {
            h.insert(RP_HEADER, &*d.rp);
        }
    }
    h.insert(POINTS_HEADER, points.to_string().as_str());
    h
}

/// The format and target a received message's headers name. No format header: line
/// protocol.
pub fn read_headers(h: Option<&async_nats::HeaderMap>) -> Result<(Format, Target), String> {
    let get = |k: &str| h.and_then(|h| h.get(k)).map(|v| v.as_str().to_owned());
    let format = match get(FORMAT_HEADER) {
        None => Format::LineProtocol,
        Some(f) => Format::parse(&f).ok_or_else(|| format!("unknown {FORMAT_HEADER} {f:?}"))?,
    };
    let target = match get(DB_HEADER) {
        Some(db) => Target::Explicit(Destination::new(&db, &get(RP_HEADER).unwrap_or_default())),
        None => Target::Default,
    };
    Ok((format, target))
}

/// How to reach NATS: the same keys in `[[outputs.nats]]` and `[listeners.nats]`.
#[derive(Debug, Clone, Default)]
pub struct Connect {
    /// Client name the server shows (`connz`).
    pub name: String,
    pub servers: Vec<String>,
    pub username: String,
    pub password: String,
    pub token: String,
    /// An nkey seed (`SU...`).
    pub nkey: String,
    /// A `.creds` file (JWT and nkey seed).
    pub credentials_file: Option<String>,
    pub tls: bool,
    pub tls_ca: Option<String>,
    pub tls_cert: Option<String>,
    pub tls_key: Option<String>,
    pub connect_timeout: Duration,
}

impl Connect {
    /// What is wrong with these settings, if anything (credentials are never echoed).
    pub fn validate(&self) -> Result<(), String> {
        if self.servers.is_empty() {
            return Err("needs at least one server".into());
        }
        for s in &self.servers {
            s.parse::<async_nats::ServerAddr>()
                .map_err(|e| format!("server {:?}: {e}", crate::config::redact_url(s)))?;
        }
        let ways = [
            !self.username.is_empty(),
            !self.token.is_empty(),
            !self.nkey.is_empty(),
            self.credentials_file.is_some(),
        ];
        if ways.iter().filter(|w| **w).count() > 1 {
            return Err(
                "set only one of username/password, token, nkey and credentials_file".into(),
            );
        }
        if !self.password.is_empty() && self.username.is_empty() {
            return Err("password needs username".into());
        }
        if !self.nkey.is_empty() && nkeys::KeyPair::from_seed(&self.nkey).is_err() {
            return Err("nkey is not a valid nkey seed".into());
        }
        if let Some(f) = &self.credentials_file {
            std::fs::metadata(f).map_err(|e| format!("credentials_file {f}: {e}"))?;
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err("tls_cert and tls_key go together".into());
        }
        for f in [&self.tls_ca, &self.tls_cert, &self.tls_key]
            .into_iter()
            .flatten()
        {
            std::fs::metadata(f).map_err(|e| format!("{f}: {e}"))?;
        }
        Ok(())
    }

    /// A client that connects in the background and reconnects for ever: a server that is
    /// down at start or goes away later costs waiting (counted by the caller), never the
    /// process.
    pub async fn connect(&self) -> Result<async_nats::Client, String> {
        let mut opts = async_nats::ConnectOptions::new()
            .name(&self.name)
            .connection_timeout(self.connect_timeout)
            .retry_on_initial_connect()
            .max_reconnects(None)
            .request_timeout(Some(Duration::from_secs(10)))
            .reconnect_delay_callback(|attempt| {
                crate::output::backoff(
                    Duration::from_millis(100),
                    Duration::from_secs(5),
                    attempt as u32,
                )
            });
        if !self.username.is_empty() {
            opts = opts.user_and_password(self.username.clone(), self.password.clone());
        }
        if !self.token.is_empty() {
            opts = opts.token(self.token.clone());
        }
        if !self.nkey.is_empty() {
            opts = opts.nkey(self.nkey.clone());
        }
        if let Some(f) = &self.credentials_file {
            opts = opts
                .credentials_file(f)
                .await
                .map_err(|e| format!("credentials_file {f}: {e}"))?;
        }
        if self.tls {
            opts = opts.require_tls(true);
        }
        if let Some(ca) = &self.tls_ca {
            opts = opts.add_root_certificates(PathBuf::from(ca));
        }
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            opts = opts.add_client_certificate(PathBuf::from(cert), PathBuf::from(key));
        }
        let servers = self
            .servers
            .iter()
            .map(|s| s.parse::<async_nats::ServerAddr>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        opts.connect(servers)
            .await
            .map_err(|e| crate::error_chain(&e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_the_target_and_format() {
        let t = Target::Explicit(Destination::new("telegraf", "weekly"));
        let h = headers(Format::Graphite, &t, 3);
        let (f, back) = read_headers(Some(&h)).unwrap();
        assert_eq!(f, Format::Graphite);
        assert!(matches!(back, Target::Explicit(d) if &*d.db == "telegraf" && &*d.rp == "weekly"));
        let h = headers(Format::LineProtocol, &Target::Default, 1);
        let (f, back) = read_headers(Some(&h)).unwrap();
        assert_eq!(f, Format::LineProtocol);
        assert!(matches!(back, Target::Default));
        assert!(matches!(
            read_headers(None),
            Ok((Format::LineProtocol, Target::Default))
        ));
    }

    #[test]
    fn conflicting_credentials_are_refused_without_echoing_them() {
        let c = Connect {
            servers: vec!["nats://127.0.0.1:4222".into()],
            username: "u".into(),
            password: "hunter2".into(),
            token: "s3cret".into(),
            ..Connect::default()
        };
        let e = c.validate().unwrap_err();
        assert!(!e.contains("hunter2") && !e.contains("s3cret"), "{e}");
        let c = Connect {
            servers: vec!["nats://127.0.0.1:4222".into()],
            nkey: "not a seed".into(),
            ..Connect::default()
        };
        assert!(c.validate().is_err());
    }
}
