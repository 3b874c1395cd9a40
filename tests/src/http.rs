//! A deliberately tiny blocking HTTP/1.1 client: one request per connection
//! (`Connection: close`), enough to drive InfluxDB and fluxgate without an async runtime and to
//! see exactly the status, headers and body a server sent.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use flate2::read::GzDecoder;

/// Connect and read timeouts: generous for a loaded CI machine, short enough that a hung server
/// fails the test instead of the CI job.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// A complete response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// Status code, e.g. 204.
    pub status: u16,
    /// Header names and values in the order and spelling the server sent them (some clients
    /// compare names case-sensitively, so tests may need to see the exact spelling).
    pub headers: Vec<(String, String)>,
    /// The body after undoing chunked transfer encoding and gzip content encoding.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first value of header `name`, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The body as text (lossy UTF-8).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    ///
    /// # Panics
    /// When the body is not JSON, quoting it.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|err| {
            panic!(
                "response (status {}) is not JSON ({err}): {}",
                self.status,
                self.text()
            )
        })
    }
}

/// Sends one request to an `http://host:port/path?query` URL.
///
/// `headers` are sent as given; `Host`, `Content-Length` (when there is a body or the method
/// usually has one) and `Connection: close` are added.
pub fn http_request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<HttpResponse> {
    let (authority, path) = split_url(url)?;
    let addr = resolve(authority)?;
    let mut stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;

    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {authority}\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    let has_length = headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("content-length"));
    if !has_length && (!body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH")) {
        request.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    request.push_str("Connection: close\r\n\r\n");
    let sent = stream
        .write_all(request.as_bytes())
        .and_then(|()| stream.write_all(body));

    // A server may answer before reading the whole body (413, 401) and close; its answer is
    // what the test wants to see, so read even when sending failed.
    let mut raw = Vec::new();
    let received = stream.read_to_end(&mut raw);
    if raw.is_empty() {
        sent?;
        received?;
    } else if let Err(err) = received {
        // Reset after a complete answer (the unread body made the kernel send RST): keep it.
        if err.kind() != io::ErrorKind::ConnectionReset {
            return Err(err);
        }
    }
    parse_response(&raw, method == "HEAD")
}

/// Sends one request with `curl` (so `https://` URLs work): `ca` is the CA file the
/// server's certificate must chain to (`--cacert`). The answer is read raw (`--raw`, no
/// transfer or content decoding by curl) and parsed as [`http_request`] parses it.
///
/// # Errors
/// When curl cannot run, or fails (TLS refused, connection refused, ...): the error then
/// carries curl's exit status and message.
pub fn curl_request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    ca: Option<&std::path::Path>,
) -> io::Result<HttpResponse> {
    let curl = crate::process::find_binary("curl")
        .ok_or_else(|| invalid("`curl` not found: apt-get install curl".to_owned()))?;
    let mut command = std::process::Command::new(curl);
    command
        .args(["-sS", "-i", "--raw", "--max-time", "30", "-X", method])
        .arg(url)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    if let Some(ca) = ca {
        command.arg("--cacert").arg(ca);
    }
    for (name, value) in headers {
        command.arg("-H").arg(format!("{name}: {value}"));
    }
    if !body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH") {
        command.arg("--data-binary").arg("@-");
    }
    let mut child = command.spawn()?;
    let mut stdin = child.stdin.take().expect("piped");
    let body = body.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&body));
    let output = child.wait_with_output()?;
    let _ = writer.join();
    if !output.status.success() {
        return Err(io::Error::other(format!(
            "curl {method} {url} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    parse_response(&output.stdout, method == "HEAD")
}

/// `GET url`.
pub fn http_get(url: &str) -> io::Result<HttpResponse> {
    http_request("GET", url, &[], &[])
}

/// `POST url` with a body of the given content type.
pub fn http_post(url: &str, content_type: &str, body: &[u8]) -> io::Result<HttpResponse> {
    http_request("POST", url, &[("Content-Type", content_type)], body)
}

/// `application/x-www-form-urlencoded` / query-string encoding of `pairs`.
pub fn form_urlencode(pairs: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (i, (key, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        percent_encode_into(&mut out, key);
        out.push('=');
        percent_encode_into(&mut out, value);
    }
    out
}

fn percent_encode_into(out: &mut String, text: &str) {
    for &byte in text.as_bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
}

/// Gzip-compresses `bytes`, for requests with `Content-Encoding: gzip`.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder
        .write_all(bytes)
        .expect("writing to a Vec cannot fail");
    encoder.finish().expect("writing to a Vec cannot fail")
}

fn split_url(url: &str) -> io::Result<(&str, &str)> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| invalid(format!("only http:// URLs are supported: {url}")))?;
    Ok(match rest.find('/') {
        Some(slash) => (&rest[..slash], &rest[slash..]),
        None => (rest, "/"),
    })
}

fn resolve(authority: &str) -> io::Result<SocketAddr> {
    let with_port = if authority
        .rsplit_once(':')
        .is_some_and(|(_, port)| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()))
    {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    with_port
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| invalid(format!("{authority} resolves to no address")))
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// Parses a complete response read until the server closed the connection.
fn parse_response(raw: &[u8], head: bool) -> io::Result<HttpResponse> {
    let header_end = find(raw, b"\r\n\r\n")
        .ok_or_else(|| invalid(format!("incomplete response: {:?}", preview(raw))))?;
    let head_text = std::str::from_utf8(&raw[..header_end])
        .map_err(|_| invalid("response headers are not UTF-8".to_owned()))?;
    let mut lines = head_text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .filter(|_| status_line.starts_with("HTTP/1."))
        .ok_or_else(|| invalid(format!("bad status line {status_line:?}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.to_owned(), value.trim().to_owned()))
        .collect();
    let mut response = HttpResponse {
        status,
        headers,
        body: Vec::new(),
    };
    if head || status == 204 || status == 304 || (100..200).contains(&status) {
        return Ok(response);
    }
    let mut body = &raw[header_end + 4..];
    let decoded;
    if response
        .header("transfer-encoding")
        .is_some_and(|te| te.eq_ignore_ascii_case("chunked"))
    {
        decoded = dechunk(body)?;
        body = &decoded;
    } else if let Some(length) = response.header("content-length") {
        let length: usize = length
            .parse()
            .map_err(|_| invalid(format!("bad Content-Length {length:?}")))?;
        body = body.get(..length).ok_or_else(|| {
            invalid(format!(
                "body shorter than Content-Length {length}: {} bytes",
                body.len()
            ))
        })?;
    }
    response.body = if response
        .header("content-encoding")
        .is_some_and(|ce| ce.eq_ignore_ascii_case("gzip"))
    {
        let mut plain = Vec::new();
        GzDecoder::new(body).read_to_end(&mut plain)?;
        plain
    } else {
        body.to_vec()
    };
    Ok(response)
}

fn dechunk(mut body: &[u8]) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end =
            find(body, b"\r\n").ok_or_else(|| invalid("truncated chunk header".to_owned()))?;
        let size_text = std::str::from_utf8(&body[..line_end])
            .map_err(|_| invalid("chunk size is not ASCII".to_owned()))?;
        let size_hex = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|_| invalid(format!("bad chunk size {size_text:?}")))?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        let chunk = body
            .get(..size)
            .ok_or_else(|| invalid("truncated chunk".to_owned()))?;
        out.extend_from_slice(chunk);
        body = body.get(size + 2..).unwrap_or_default();
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

fn preview(raw: &[u8]) -> String {
    String::from_utf8_lossy(&raw[..raw.len().min(200)]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_content_length_body() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Influxdb-Version: 1.6.7\r\nContent-Length: 2\r\n\r\n{}trailing";
        let response = parse_response(raw, false).unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.header("x-influxdb-version"), Some("1.6.7"));
        assert_eq!(response.headers[1].0, "X-Influxdb-Version");
        assert_eq!(response.body, b"{}");
    }

    #[test]
    fn parses_chunked_body() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWiki\r\n5;x=y\r\npedia\r\n0\r\n\r\n";
        assert_eq!(parse_response(raw, false).unwrap().text(), "Wikipedia");
    }

    #[test]
    fn undoes_gzip() {
        let mut raw = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\r\n".to_vec();
        raw.extend_from_slice(&gzip(b"hello"));
        assert_eq!(parse_response(&raw, false).unwrap().text(), "hello");
    }

    #[test]
    fn no_body_for_204_and_head() {
        let raw = b"HTTP/1.1 204 No Content\r\nX-Request-Id: 1\r\n\r\n";
        assert!(parse_response(raw, false).unwrap().body.is_empty());
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n";
        assert!(parse_response(raw, true).unwrap().body.is_empty());
    }

    #[test]
    fn rejects_garbage() {
        let err = parse_response(b"SSH-2.0-OpenSSH\r\n\r\n", false).unwrap_err();
        assert_eq!(err.to_string(), "bad status line \"SSH-2.0-OpenSSH\"");
        let err = parse_response(b"HTTP/1.1 200 OK\r\n", false).unwrap_err();
        assert_eq!(
            err.to_string(),
            "incomplete response: \"HTTP/1.1 200 OK\\r\\n\""
        );
    }

    #[test]
    fn an_early_answer_to_an_unread_body_is_returned() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut head = Vec::new();
            let mut byte = [0_u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                stream.read_exact(&mut byte).unwrap();
                head.push(byte[0]);
            }
            stream
                .write_all(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 9\r\n\r\ntoo large")
                .unwrap();
        });
        let body = vec![b'x'; 16 << 20];
        let response = http_post(&format!("http://{addr}/write"), "text/plain", &body).unwrap();
        server.join().unwrap();
        assert_eq!(
            (response.status, response.text().as_str()),
            (413, "too large")
        );
    }

    #[test]
    fn encodes_forms() {
        assert_eq!(
            form_urlencode(&[("q", "SELECT * FROM \"m\" WHERE a='b c'"), ("db", "x/y")]),
            "q=SELECT%20%2A%20FROM%20%22m%22%20WHERE%20a%3D%27b%20c%27&db=x%2Fy"
        );
    }

    #[test]
    fn splits_urls() {
        assert_eq!(
            split_url("http://127.0.0.1:8086/query?db=x").unwrap(),
            ("127.0.0.1:8086", "/query?db=x")
        );
        assert_eq!(
            split_url("http://localhost:1").unwrap(),
            ("localhost:1", "/")
        );
        assert!(split_url("https://x").is_err());
    }
}
