//! InfluxDB 2.x reads through the gateway: `/api/v2/query` (Flux), `/api/v2/buckets`,
//! `/ready` and `/api/v2/health`, proxied to the first `api = "v2"` output, so a v2 client
//! (influxdb-client's `query_api`, the DatabaseInterface library's `query_latest` /
//! `query_historical`) pointed at the gateway reads what it wrote through it.
//!
//! The policy is `/query`'s (see [`super::query`]):
//! - `query = "off"`: `/api/v2/query` and `/api/v2/buckets` answer 404. `"read_only"` (the
//!   default): a Flux query must pass [`crate::listener::flux::check_read_only`] (no `to()`,
//!   no import of a package that reaches other systems, no `from(host:)`), an `extern` may set
//!   values only, a body must be JSON (`{"query": ..., "type": "flux"}`) or
//!   `application/vnd.flux`, and `/api/v2/buckets` is read-only (GET); otherwise 403, counted
//!   as `query_refused`. What is forwarded is re-encoded from what was checked.
//! - Credentials: with `users`/`tokens` set, the client must authenticate to fluxgate, its
//!   credentials stay here, and the output's `token` goes upstream. Without them, the
//!   client's own `Authorization` (if any) goes upstream and the output's token never does:
//!   lending it to an anonymous client would give it the output's privileges.
//! - `/ready` and `/api/v2/health` carry no data and need no credentials (as in InfluxDB);
//!   none are sent upstream for them.
//! - Answers are streamed as they arrive (a Flux CSV answer can be large); an upstream failure
//!   in the middle of one cuts the response, never ends it as if complete.

use super::*;

/// What `query = "read_only"` answers to a Flux query that does more than read.
pub const FLUX_REFUSED: &str = "fluxgate: only Flux queries that read pass /api/v2/query (query = \"read_only\"): no to(), no imports of packages that reach other systems, no from(host:)";

/// The pipeline in force, when it has a v2 output to answer.
fn first_v2(st: &HttpState) -> Option<Arc<crate::pipeline::Pipeline>> {
    let pipeline = st.ctx.pipeline();
    let found = pipeline
        .outputs
        .iter()
        .filter_map(|o| o.as_influx())
        .any(|i| i.config().api == InfluxApi::V2);
    found.then_some(pipeline)
}

fn no_v2() -> Response {
    error(
        InfluxApi::V2,
        StatusCode::SERVICE_UNAVAILABLE,
        "no InfluxDB v2 output is configured to answer v2 reads",
    )
}

fn v2_output(pipeline: &crate::pipeline::Pipeline) -> &InfluxOutput {
    pipeline
        .outputs
        .iter()
        .filter_map(|o| o.as_influx())
        .find(|i| i.config().api == InfluxApi::V2)
        .expect("checked by first_v2")
}

/// How the upstream request carries credentials.
enum Creds<'a> {
    /// The output's token (the client authenticated to fluxgate).
    Output,
    /// The client's own `Authorization`, if any.
    Client(&'a HeaderMap),
    None,
}

fn refuse(st: &HttpState, what: &str) -> Response {
    st.ctx.reject("query_refused", 1);
    // The query's text is not logged: it may carry a token.
    warn_limited!(
        st.ctx.log_limit,
        listener = st.ctx.name,
        statement = %what,
        "/api/v2/query refused (query = \"read_only\")"
    );
    error(InfluxApi::V2, StatusCode::FORBIDDEN, FLUX_REFUSED)
}

/// The policy's gate for `/api/v2/query` and `/api/v2/buckets`: `Ok` with the credentials
/// to send upstream.
#[allow(clippy::result_large_err)]
fn gate<'a>(
    st: &HttpState,
    headers: &'a HeaderMap,
    params: &[(String, String)],
    path: &str,
) -> Result<Creds<'a>, Response> {
    if st.cfg.query == QueryPolicy::Off {
        st.ctx.reject("query_refused", 1);
        return Err(error(
            InfluxApi::V2,
            StatusCode::NOT_FOUND,
            &format!("fluxgate: {path} is turned off (query = \"off\")"),
        ));
    }
    if let Some(refused) = authorize(st, InfluxApi::V2, headers, params) {
        return Err(refused);
    }
    Ok(if st.auth.enabled() {
        Creds::Output
    } else {
        Creds::Client(headers)
    })
}

fn media_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

/// `POST /api/v2/query`: a Flux query, answered in CSV.
pub(super) async fn query_v2(
    State(st): AppState,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params = query_pairs(&uri);
    let creds = match gate(&st, &headers, &params, "/api/v2/query") {
        Ok(c) => c,
        Err(r) => return r,
    };
    let media = media_type(&headers);
    let (body, content_type) = match media.as_str() {
        "application/vnd.flux" => {
            let Ok(text) = std::str::from_utf8(&body) else {
                return error(
                    InfluxApi::V2,
                    StatusCode::BAD_REQUEST,
                    "the Flux query is not UTF-8",
                );
            };
            if st.cfg.query == QueryPolicy::ReadOnly {
                if let Err(r) = crate::listener::flux::check_read_only(text) {
                    return refuse(&st, &r.keyword);
                }
            }
            (body.clone(), "application/vnd.flux")
        }
        "application/json" | "" => {
            let doc: serde_json::Value = match serde_json::from_slice(&body) {
                Ok(v) => v,
                Err(e) => {
                    return error(
                        InfluxApi::V2,
                        StatusCode::BAD_REQUEST,
                        &format!("failed to decode request body: {e}"),
                    )
                }
            };
            if st.cfg.query == QueryPolicy::ReadOnly {
                if let Err(what) = check_json_query(&doc) {
                    return refuse(&st, &what);
                }
            }
            (
                Bytes::from(serde_json::to_vec(&doc).unwrap_or_default()),
                "application/json",
            )
        }
        _ if st.cfg.query == QueryPolicy::ReadOnly => {
            return refuse(&st, &format!("a {media} body"));
        }
        _ => (body.clone(), "application/octet-stream"),
    };
    let Some(pipeline) = first_v2(&st) else {
        return no_v2();
    };
    let out = v2_output(&pipeline);
    let mut params = params;
    if !params.iter().any(|(k, _)| k == "org" || k == "orgID") && !out.config().org.is_empty() {
        params.push(("org".into(), out.config().org.clone()));
    }
    forward(
        &st,
        out,
        Method::POST,
        "/api/v2/query",
        &params,
        &headers,
        creds,
        Some((content_type, body)),
    )
    .await
}

/// A JSON query body under `read_only`: Flux only, its text and its `extern` checked.
fn check_json_query(doc: &serde_json::Value) -> Result<(), String> {
    let Some(obj) = doc.as_object() else {
        return Err("a body that is not a JSON object".into());
    };
    match obj.get("type").and_then(|t| t.as_str()) {
        None | Some("flux") => {}
        Some(other) => return Err(format!("type {other:?}")),
    }
    let Some(q) = obj.get("query").and_then(|q| q.as_str()) else {
        return Err("a body without a query".into());
    };
    crate::listener::flux::check_read_only(q).map_err(|r| r.keyword)?;
    if let Some(ext) = obj.get("extern").filter(|e| !e.is_null()) {
        crate::listener::flux::check_extern(ext).map_err(|r| r.keyword)?;
    }
    Ok(())
}

/// `/api/v2/buckets`: the list (GET); creating one (POST) only with `query = "passthrough"`.
pub(super) async fn buckets(
    State(st): AppState,
    method: Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params = query_pairs(&uri);
    let creds = match gate(&st, &headers, &params, "/api/v2/buckets") {
        Ok(c) => c,
        Err(r) => return r,
    };
    let read = method == Method::GET || method == Method::HEAD;
    if !read && st.cfg.query == QueryPolicy::ReadOnly {
        return refuse(&st, &format!("{method} /api/v2/buckets"));
    }
    if !read && method != Method::POST {
        return error(
            InfluxApi::V2,
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed",
        );
    }
    let Some(pipeline) = first_v2(&st) else {
        return no_v2();
    };
    let out = v2_output(&pipeline);
    let body = (!read).then_some(("application/json", body));
    forward(
        &st,
        out,
        method,
        "/api/v2/buckets",
        &params,
        &headers,
        creds,
        body,
    )
    .await
}

/// `GET /ready`: the upstream's readiness.
pub(super) async fn ready(State(st): AppState, headers: HeaderMap) -> Response {
    let Some(pipeline) = first_v2(&st) else {
        return no_v2();
    };
    let out = v2_output(&pipeline);
    forward(
        &st,
        out,
        Method::GET,
        "/ready",
        &[],
        &headers,
        Creds::None,
        None,
    )
    .await
}

/// `GET /api/v2/health`: the upstream's health (InfluxDB 2.x serves it at `/health`, which
/// on fluxgate reports fluxgate's own).
pub(super) async fn health_v2(State(st): AppState, headers: HeaderMap) -> Response {
    let Some(pipeline) = first_v2(&st) else {
        return no_v2();
    };
    let out = v2_output(&pipeline);
    forward(
        &st,
        out,
        Method::GET,
        "/health",
        &[],
        &headers,
        Creds::None,
        None,
    )
    .await
}

/// Sends one request to the output's upstream and streams its answer back.
#[allow(clippy::too_many_arguments)]
async fn forward(
    st: &HttpState,
    out: &InfluxOutput,
    method: Method,
    path: &str,
    params: &[(String, String)],
    headers: &HeaderMap,
    creds: Creds<'_>,
    body: Option<(&'static str, Bytes)>,
) -> Response {
    let upstream = crate::config::redact_url(out.base_url());
    let mut url = match reqwest::Url::parse(out.base_url().trim_end_matches('/')) {
        Ok(u) => u,
        Err(_) => {
            return error(
                InfluxApi::V2,
                StatusCode::BAD_GATEWAY,
                "the InfluxDB output's url is not usable",
            )
        }
    };
    url.set_path(&format!("{}{path}", url.path().trim_end_matches('/')));
    let query_string = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    url.set_query((!query_string.is_empty()).then_some(query_string.as_str()));
    let mut req = out.client().request(method, url);
    for name in [header::ACCEPT, header::ACCEPT_ENCODING] {
        if let Some(v) = headers.get(&name) {
            req = req.header(name, v);
        }
    }
    match creds {
        Creds::Output => {
            let token = &out.config().token;
            if !token.is_empty() {
                req = req.header(header::AUTHORIZATION, format!("Token {token}"));
            }
        }
        Creds::Client(h) => {
            if let Some(v) = h.get(header::AUTHORIZATION) {
                req = req.header(header::AUTHORIZATION, v);
            }
        }
        Creds::None => {}
    }
    if let Some((content_type, body)) = body {
        req = req.header(header::CONTENT_TYPE, content_type).body(body);
    }
    let copied = [
        header::CONTENT_TYPE,
        header::CONTENT_ENCODING,
        header::RETRY_AFTER,
        header::HeaderName::from_static("x-influxdb-version"),
        header::HeaderName::from_static("x-influxdb-build"),
    ];
    proxied_answer(
        st,
        InfluxApi::V2,
        path,
        &upstream,
        &copied,
        req.send().await,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_queries_are_checked_as_flux() {
        let q = |v: serde_json::Value| check_json_query(&v);
        assert_eq!(
            q(
                serde_json::json!({"query": "buckets()", "type": "flux", "dialect": {"header": true}})
            ),
            Ok(())
        );
        assert_eq!(
            q(serde_json::json!({"query": "from(bucket:\"a\") |> to(bucket:\"b\")"})),
            Err("to".into())
        );
        assert_eq!(
            q(serde_json::json!({"query": "x", "type": "influxql"})),
            Err("type \"influxql\"".into())
        );
        assert!(q(serde_json::json!({"type": "flux"})).is_err());
        assert!(q(serde_json::json!(["buckets()"])).is_err());
    }
}
