//! Which Flux queries `query = "read_only"` lets through `/api/v2/query`.
//!
//! Flux reads unless it calls something with an effect outside the query: `to()` and
//! `wideTo()` write, and packages such as `http`, `sql`, `csv` (files), `socket`,
//! `influxdata/influxdb/secrets`, `mqtt`, `slack` or `experimental/http` reach other systems
//! from the upstream's own network with its privileges; `from(host: ...)` does too. The check
//! is lexical and deliberately conservative, so no spelling can slip a write past it, at the
//! price of refusing a few odd reads (as the InfluxQL check refuses `INTO` inside a string):
//! - the whole text is scanned, strings and comments included (a Flux string can interpolate
//!   code: `"${...}"`);
//! - the word `to` or `wideTo` is refused unless a `:` follows it (a named argument such as
//!   `date.add(d: 1h, to: now())`); so a column read as `r.to` is refused too;
//! - every `import` must name a package from [`PURE_PACKAGES`], written `import "path"` or
//!   `import alias "path"`;
//! - a `from(...)` call must not name a `host` (a query of another server).

use super::influxql::Refused;

/// Packages whose functions only compute: what a read may import.
pub(crate) const PURE_PACKAGES: &[&str] = &[
    "array",
    "bitwise",
    "date",
    "date/boundaries",
    "dict",
    "experimental",
    "experimental/aggregate",
    "experimental/array",
    "experimental/geo",
    "experimental/json",
    "experimental/table",
    "influxdata/influxdb/schema",
    "influxdata/influxdb/v1",
    "interpolate",
    "join",
    "json",
    "math",
    "regexp",
    "sampledata",
    "strings",
    "system",
    "timezone",
    "types",
    "universe",
];

fn refused(what: &str) -> Refused {
    Refused {
        keyword: what.to_owned(),
    }
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// The position of the next byte after `i` that is not whitespace or inside a `//` comment.
fn skip_blank(s: &[u8], mut i: usize) -> usize {
    loop {
        while i < s.len() && s[i].is_ascii_whitespace() {
            i += 1;
        }
        if s[i..].starts_with(b"//") {
            while i < s.len() && s[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        return i;
    }
}

/// `Ok` when the Flux text `q` only reads.
pub(crate) fn check_read_only(q: &str) -> Result<(), Refused> {
    let s = q.as_bytes();
    let mut i = 0;
    while i < s.len() {
        if !is_ident_start(s[i]) || (i > 0 && is_ident(s[i - 1])) {
            i += 1;
            continue;
        }
        let start = i;
        while i < s.len() && is_ident(s[i]) {
            i += 1;
        }
        let word = &q[start..i];
        let next = skip_blank(s, i);
        let followed_by = s.get(next).copied();
        match word {
            "to" | "wideTo" if followed_by != Some(b':') => return Err(refused(word)),
            "import" => {
                // `import "path"` or `import alias "path"`.
                let mut at = next;
                if s.get(at).copied().is_some_and(is_ident_start) {
                    while at < s.len() && is_ident(s[at]) {
                        at += 1;
                    }
                    at = skip_blank(s, at);
                }
                if s.get(at) != Some(&b'"') {
                    return Err(refused("import"));
                }
                let path_start = at + 1;
                let Some(len) = s[path_start..].iter().position(|&b| b == b'"') else {
                    return Err(refused("import"));
                };
                let path = &q[path_start..path_start + len];
                if !PURE_PACKAGES.contains(&path) {
                    return Err(refused(&format!("import \"{path}\"")));
                }
                i = path_start + len + 1;
            }
            "from" if followed_by == Some(b'(') => {
                let mut depth = 0usize;
                let mut end = next;
                while end < s.len() {
                    match s[end] {
                        b'(' => depth += 1,
                        b')' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    end += 1;
                }
                if has_named_arg(&s[next..end.min(s.len())], b"host") {
                    return Err(refused("from(host: ...)"));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Whether `word` appears in `s` as a word followed by `:`.
fn has_named_arg(s: &[u8], word: &[u8]) -> bool {
    let mut i = 0;
    while let Some(pos) = s[i..].windows(word.len()).position(|w| w == word) {
        let at = i + pos;
        let before_ok = at == 0 || !is_ident(s[at - 1]);
        let after = at + word.len();
        let after_ok = s.get(after).is_none_or(|&b| !is_ident(b));
        if before_ok && after_ok && s.get(skip_blank(s, after)) == Some(&b':') {
            return true;
        }
        i = at + 1;
    }
    false
}

/// A JSON `extern` (a Flux AST prepended to the query, as influxdb-client sends its
/// `params`): allowed only when it imports nothing and holds no call, pipe or function, so
/// it can set values and nothing else.
pub(crate) fn check_extern(ast: &serde_json::Value) -> Result<(), Refused> {
    use serde_json::Value;
    fn walk(v: &Value) -> Result<(), Refused> {
        match v {
            Value::Object(map) => {
                if let Some(Value::String(t)) = map.get("type") {
                    if matches!(
                        t.as_str(),
                        "CallExpression"
                            | "PipeExpression"
                            | "FunctionExpression"
                            | "ImportDeclaration"
                    ) {
                        return Err(refused(&format!("extern {t}")));
                    }
                }
                if let Some(Value::Array(imports)) = map.get("imports") {
                    if !imports.is_empty() {
                        return Err(refused("extern import"));
                    }
                }
                map.values().try_for_each(walk)
            }
            Value::Array(items) => items.iter().try_for_each(walk),
            _ => Ok(()),
        }
    }
    walk(ast)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(q: &str) {
        assert_eq!(check_read_only(q), Ok(()), "{q}");
    }

    fn no(q: &str, why: &str) {
        assert_eq!(
            check_read_only(q).map_err(|r| r.keyword),
            Err(why.to_owned()),
            "{q}"
        );
    }

    #[test]
    fn reads_pass() {
        ok(r#"from(bucket:"my-bucket") |> range(start: -1h) |> last()"#);
        ok(
            r#"from(bucket: "b") |> range(start: 2024-05-16T00:00:00Z, stop: 2024-05-21T00:00:00Z)
              |> filter(fn: (r) => r._measurement == "device")
              |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")"#,
        );
        ok(r#"import "strings"
              import s2 "experimental/aggregate"
              from(bucket: "b") |> range(start: -1d) |> map(fn: (r) => ({r with t: strings.toUpper(v: r.host)}))"#);
        ok(r#"import "experimental" experimental.addDuration(d: 1h, to: now())"#);
        ok("buckets()");
    }

    #[test]
    fn writes_and_other_reaches_are_refused() {
        no(
            r#"from(bucket:"a") |> range(start: -1h) |> to(bucket: "b")"#,
            "to",
        );
        no(
            r#"from(bucket:"a") |> range(start: -1h) |> to (bucket: "b")"#,
            "to",
        );
        no(
            r#"import "experimental" from(bucket:"a") |> experimental.to(bucket: "b")"#,
            "to",
        );
        no(
            r#"import "influxdata/influxdb" influxdb.wideTo(bucket: "b")"#,
            "import \"influxdata/influxdb\"",
        );
        no(
            r#"w = to
              from(bucket:"a") |> w(bucket: "b")"#,
            "to",
        );
        no(
            r#"import "http" http.post(url: "http://x/")"#,
            "import \"http\"",
        );
        no(
            r#"import h "sql" h.from(driverName: "postgres", dataSourceName: "x", query: "y")"#,
            "import \"sql\"",
        );
        no(
            r#"import "influxdata/influxdb/secrets" secrets.get(key: "k")"#,
            "import \"influxdata/influxdb/secrets\"",
        );
        no(r#"import csv.from(file: "/etc/passwd")"#, "import");
        no(
            r#"from(bucket: "a", host: "http://10.0.0.1:8086", token: "t")"#,
            "from(host: ...)",
        );
        // Inside a string too: Flux interpolates code in strings.
        no(
            r#"from(bucket:"a") |> map(fn: (r) => ({r with s: "${to(bucket: "x")}"}))"#,
            "to",
        );
    }

    #[test]
    fn extern_may_set_values_only() {
        let params = serde_json::json!({"type": "File", "imports": [], "body": [
            {"type": "OptionStatement", "assignment": {"type": "VariableAssignment",
             "id": {"type": "Identifier", "name": "params"},
             "init": {"type": "ObjectExpression", "properties": [
               {"type": "Property", "key": {"type": "Identifier", "name": "bucket"},
                "value": {"type": "StringLiteral", "value": "b"}}]}}}]});
        assert_eq!(check_extern(&params), Ok(()));
        let call = serde_json::json!({"type": "File", "imports": [], "body": [
            {"type": "ExpressionStatement", "expression": {"type": "CallExpression"}}]});
        assert!(check_extern(&call).is_err());
        let import = serde_json::json!({"type": "File", "imports": [{"path": {"value": "http"}}], "body": []});
        assert!(check_extern(&import).is_err());
    }
}
