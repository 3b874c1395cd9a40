//! Inbound authentication on the HTTP listener: `[listeners.http] users` and `tokens`.
//!
//! Credentials are read the ways InfluxDB clients send them: v1 `u`/`p` parameters, HTTP
//! Basic, `Authorization: Token name:password` (1.x) and `Authorization: Token <t>` or
//! `Bearer <t>` (2.x).

use axum::http::{header, HeaderMap};
use base64::Engine as _;
use subtle::ConstantTimeEq;

use crate::config::HttpListener;

type Digest = [u8; 32];

fn digest(parts: &[&[u8]]) -> Digest {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for p in parts {
        ctx.update(p);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// The accepted credentials, kept as SHA-256 digests.
///
/// Comparisons are constant-time (`subtle`) over the digests, and every configured entry is
/// compared whatever matched before, because a comparison that stops at the first differing
/// byte tells an attacker, by how long a refusal takes, how much of a guess was right; and
/// comparing digests rather than the secrets themselves makes every comparison the same
/// length, so the time does not tell the secret's length either.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Auth {
    /// `name:password` entries.
    users: Vec<Digest>,
    tokens: Vec<Digest>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("users", &self.users.len())
            .field("tokens", &self.tokens.len())
            .finish()
    }
}

/// What a request presented.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Credentials {
    /// A name and password (`u`/`p`, Basic, `Token name:password`).
    pub(crate) user: Option<(String, String)>,
    /// A token (`Token <t>`, `Bearer <t>`); a `Token` value with a colon is tried as both.
    pub(crate) token: Option<String>,
}

impl Credentials {
    /// From the `Authorization` header, else the `u`/`p` parameters among `params`.
    pub(crate) fn from_request<'a>(
        headers: &HeaderMap,
        params: impl IntoIterator<Item = &'a (String, String)>,
    ) -> Self {
        let mut c = Credentials::default();
        if let Some(value) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        {
            let value = value.trim();
            let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
            let rest = rest.trim();
            if scheme.eq_ignore_ascii_case("basic") {
                if let Some((u, p)) = base64::engine::general_purpose::STANDARD
                    .decode(rest)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .and_then(|s| s.split_once(':').map(|(u, p)| (u.to_owned(), p.to_owned())))
                {
                    c.user = Some((u, p));
                }
            } else if scheme.eq_ignore_ascii_case("token") {
                c.token = Some(rest.to_owned());
                if let Some((u, p)) = rest.split_once(':') {
                    c.user = Some((u.to_owned(), p.to_owned()));
                }
            } else if scheme.eq_ignore_ascii_case("bearer") {
                c.token = Some(rest.to_owned());
            }
        }
        if c.user.is_none() && c.token.is_none() {
            let (mut u, mut p) = (None, None);
            for (k, v) in params {
                match k.as_str() {
                    "u" if u.is_none() => u = Some(v.clone()),
                    "p" if p.is_none() => p = Some(v.clone()),
                    _ => {}
                }
            }
            if let Some(u) = u {
                c.user = Some((u, p.unwrap_or_default()));
            }
        }
        c
    }

    /// Whether the client sent any credentials at all.
    pub(crate) fn present(&self) -> bool {
        self.user.is_some() || self.token.is_some()
    }
}

impl Auth {
    pub(crate) fn new(cfg: &HttpListener) -> Self {
        Self {
            users: cfg
                .users
                .iter()
                .map(|u| digest(&[u.expose().as_bytes()]))
                .collect(),
            tokens: cfg
                .tokens
                .iter()
                .map(|t| digest(&[t.expose().as_bytes()]))
                .collect(),
        }
    }

    pub(crate) fn enabled(&self) -> bool {
        !self.users.is_empty() || !self.tokens.is_empty()
    }

    /// Whether `c` matches a configured user or token (see the type's docs for why every
    /// entry is compared, in constant time).
    pub(crate) fn check(&self, c: &Credentials) -> bool {
        let mut ok = subtle::Choice::from(0u8);
        if let Some((u, p)) = &c.user {
            let d = digest(&[u.as_bytes(), b":", p.as_bytes()]);
            for known in &self.users {
                ok |= known.ct_eq(&d);
            }
        }
        if let Some(t) = &c.token {
            let d = digest(&[t.as_bytes()]);
            for known in &self.tokens {
                ok |= known.ct_eq(&d);
            }
        }
        ok.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use axum::http::HeaderValue;

    fn auth() -> Auth {
        Auth::new(&HttpListener {
            users: vec![Secret::new("alice:s3cret:x")],
            tokens: vec![Secret::new("tok-123")],
            ..HttpListener::default()
        })
    }

    fn creds(h: Option<&str>, params: &[(&str, &str)]) -> Credentials {
        let mut headers = HeaderMap::new();
        if let Some(h) = h {
            headers.insert(header::AUTHORIZATION, HeaderValue::from_str(h).unwrap());
        }
        let params: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Credentials::from_request(&headers, &params)
    }

    #[test]
    fn every_way_influxdb_clients_authenticate() {
        let a = auth();
        // alice:s3cret:x in base64
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("alice:s3cret:x")
        );
        assert!(a.check(&creds(Some(&basic), &[])));
        assert!(a.check(&creds(None, &[("u", "alice"), ("p", "s3cret:x")])));
        assert!(a.check(&creds(Some("Token alice:s3cret:x"), &[])));
        assert!(a.check(&creds(Some("Token tok-123"), &[])));
        assert!(a.check(&creds(Some("Bearer tok-123"), &[])));
        assert!(a.check(&creds(Some("token   tok-123 "), &[])));
    }

    #[test]
    fn wrong_or_missing_credentials_are_refused() {
        let a = auth();
        assert!(!a.check(&creds(None, &[])));
        assert!(!a.check(&creds(None, &[("u", "alice"), ("p", "s3cret")])));
        assert!(!a.check(&creds(None, &[("u", "alice")])));
        assert!(!a.check(&creds(Some("Token tok-1234"), &[])));
        assert!(!a.check(&creds(Some("Token tok-12"), &[])));
        assert!(!a.check(&creds(Some("Basic !!!"), &[])));
        assert!(!a.check(&creds(Some("Bearer alice:s3cret:x"), &[])));
        // A token is not a password, nor the other way round.
        assert!(!a.check(&creds(None, &[("u", "tok-123"), ("p", "")])));
        // The header wins over parameters, as in InfluxDB.
        assert!(!a.check(&creds(
            Some("Token nope"),
            &[("u", "alice"), ("p", "s3cret:x")]
        )));
    }

    #[test]
    fn secrets_do_not_show_in_debug_output() {
        let text = format!("{:?}", auth());
        assert!(
            !text.contains("s3cret") && !text.contains("tok-123"),
            "{text}"
        );
    }
}
