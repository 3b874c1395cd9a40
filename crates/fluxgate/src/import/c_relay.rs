//! carbon-c-relay's configuration file (3.7's grammar: `conffile.l` / `conffile.y`) into
//! fluxgate's.
//!
//! The lexer follows carbon-c-relay's: `#` starts a comment anywhere, `;` ends a statement,
//! `"..."` strings take `\x` as `x`, a word may hold an escaped space (`a\ b`), and
//! `host:port=instance` is a word, `=` and an instance. Statements:
//!
//! | carbon-c-relay | fluxgate |
//! |---|---|
//! | `cluster N forward / any_of / failover` | `[[outputs.graphite]] cluster = "forward" / "any_of" / "failover"` |
//! | `cluster N carbon_ch replication R` | `cluster = "carbon_ch_compat"` (carbon-c-relay's ring keeps colliding positions) |
//! | `cluster N fnv1a_ch / jump_fnv1a_ch replication R` | the same kinds, `replication = R` |
//! | member `host[:port][=instance]` (port 2003) | `destinations = ["host:port[:instance]"]`, `protocol = "plaintext"` |
//! | member `transport plain ssl` | `tls = true` |
//! | `match E... send to C... [stop]` | `[[routes]] match = [...] outputs = [...] stop` |
//! | `match E... send to blackhole` | `[[routes]] drop = true` |
//! | `rewrite E into R` | `[[rewrite]]` (`\1`, `\_1`, `\^1`; `$` doubled) |
//! | `aggregate ... compute F write to T ...` | `[[aggregate]]` (issue 10's keys) |
//! | `listen type linemode P proto tcp/udp` | `[listeners.plaintext] tcp / udp` |
//! | `include GLOB` | read in place, recursively |
//!
//! carbon-c-relay cleanses every input name (`[graphite] validation = "cleanse"`, whose
//! default allowed characters are carbon-c-relay's `-c` default). What fluxgate cannot do the
//! same way is a [`Problem`]: `file` clusters, UDP or compressed members, `useall` and
//! `dynamic`, `validate` and `route using`, statistics, unix sockets and compressed listeners,
//! a second TCP or UDP listener, dot-replacing backreferences (`\.1`), and a `rewrite` placed
//! after a `match` or `aggregate` (fluxgate rewrites every name before routing it, so such a
//! rewrite would change what the rules above it see).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::{quote, quote_all, read, shorten, Doc, ImportError, Imported, Problem};

/// How deep `include` may nest (carbon-c-relay has no limit and loops forever on a cycle).
const MAX_INCLUDE_DEPTH: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Token {
    text: String,
    /// A `"..."` string: never a keyword.
    quoted: bool,
    line: usize,
}

impl Token {
    fn is(&self, word: &str) -> bool {
        !self.quoted && self.text == word
    }
}

/// Splits a file into tokens; `;` is a token of its own.
fn lex(text: &str, file: &str) -> Result<Vec<Token>, ImportError> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line = 1;
    let mut word = String::new();
    let mut word_line = 1;
    let flush = |word: &mut String, tokens: &mut Vec<Token>, line: usize| {
        if !word.is_empty() {
            tokens.push(Token {
                text: std::mem::take(word),
                quoted: false,
                line,
            });
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '#' => {
                flush(&mut word, &mut tokens, word_line);
                for c in chars.by_ref() {
                    if c == '\n' {
                        line += 1;
                        break;
                    }
                }
            }
            '\n' => {
                flush(&mut word, &mut tokens, word_line);
                line += 1;
            }
            ' ' | '\t' | '\r' => flush(&mut word, &mut tokens, word_line),
            ';' => {
                flush(&mut word, &mut tokens, word_line);
                tokens.push(Token {
                    text: ";".into(),
                    quoted: false,
                    line,
                });
            }
            '"' => {
                flush(&mut word, &mut tokens, word_line);
                let mut s = String::new();
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some('\n') | None => {
                                return Err(ImportError::syntax(file, line, "unterminated string"))
                            }
                            Some(e) => s.push(e),
                        },
                        Some('\n') | None => {
                            return Err(ImportError::syntax(file, line, "unterminated string"))
                        }
                        Some(c) => s.push(c),
                    }
                }
                if s.is_empty() {
                    return Err(ImportError::syntax(file, line, "empty string"));
                }
                tokens.push(Token {
                    text: s,
                    quoted: true,
                    line,
                });
            }
            '\\' if chars.peek() == Some(&' ') => {
                // `a\ b`: an escaped space stays inside the word, backslash included.
                if word.is_empty() {
                    word_line = line;
                }
                word.push('\\');
                word.push(' ');
                chars.next();
            }
            c => {
                if word.is_empty() {
                    word_line = line;
                }
                word.push(c);
            }
        }
    }
    flush(&mut word, &mut tokens, word_line);
    Ok(tokens)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Forward,
    AnyOf,
    Failover,
    CarbonCh,
    Fnv1aCh,
    JumpFnv1aCh,
    File,
}

impl Kind {
    fn hashing(self) -> bool {
        matches!(self, Self::CarbonCh | Self::Fnv1aCh | Self::JumpFnv1aCh)
    }

    fn fluxgate(self) -> &'static str {
        match self {
            Self::Forward => "forward",
            Self::AnyOf => "any_of",
            Self::Failover => "failover",
            Self::CarbonCh => "carbon_ch_compat",
            Self::Fnv1aCh => "fnv1a_ch",
            Self::JumpFnv1aCh => "jump_fnv1a_ch",
            Self::File => "file",
        }
    }
}

#[derive(Debug, Clone, Default)]
struct Member {
    address: String,
    instance: Option<String>,
    udp: bool,
    transport: Option<String>,
    ssl: bool,
}

#[derive(Debug, Clone)]
struct Cluster {
    name: String,
    kind: Kind,
    replication: u32,
    useall: bool,
    dynamic: bool,
    members: Vec<Member>,
}

#[derive(Debug, Clone, Default)]
struct Match {
    patterns: Vec<String>,
    validate: Option<String>,
    route_using: Option<String>,
    send_to: Vec<String>,
    blackhole: bool,
    stop: bool,
}

#[derive(Debug, Clone)]
struct Compute {
    function: String,
    write_to: String,
}

#[derive(Debug, Clone)]
struct Aggregate {
    patterns: Vec<String>,
    every: u64,
    expire: u64,
    timestamp: Option<String>,
    computes: Vec<Compute>,
    send_to: Vec<String>,
    stop: bool,
}

#[derive(Debug, Clone)]
struct ListenAddr {
    address: String,
    proto: String,
}

#[derive(Debug, Clone)]
struct Listen {
    transport: Option<String>,
    ssl: Option<String>,
    addresses: Vec<ListenAddr>,
}

#[derive(Debug, Clone)]
enum Body {
    Cluster(Cluster),
    Match(Match),
    Rewrite { pattern: String, into: String },
    Aggregate(Aggregate),
    Listen(Listen),
    Statistics(Statistics),
}

/// `statistics [submit every N seconds] [reset counters after interval] [prefix with P]
/// [send to C...] [stop]`, or the older `send statistics to C... [stop]`.
#[derive(Debug, Clone, Default)]
struct Statistics {
    every: Option<u64>,
    reset: bool,
    prefix: Option<String>,
    send_to: Vec<String>,
}

#[derive(Debug, Clone)]
struct Statement {
    file: String,
    line: usize,
    text: String,
    body: Body,
}

/// A cursor over one statement's tokens (the `;` excluded).
struct Cursor<'a> {
    tokens: &'a [Token],
    at: usize,
    file: &'a str,
    line: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<&'a Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<&'a Token> {
        let t = self.tokens.get(self.at);
        self.at += usize::from(t.is_some());
        t
    }

    fn peek_is(&self, word: &str) -> bool {
        self.peek().is_some_and(|t| t.is(word))
    }

    fn error(&self, message: impl Into<String>) -> ImportError {
        let line = self.peek().map_or(self.line, |t| t.line);
        ImportError::syntax(self.file, line, message)
    }

    fn expect(&mut self, word: &str) -> Result<(), ImportError> {
        match self.peek() {
            Some(t) if t.is(word) => {
                self.at += 1;
                Ok(())
            }
            Some(t) => Err(self.error(format!("expected `{word}`, found `{}`", t.text))),
            None => Err(self.error(format!("expected `{word}` before `;`"))),
        }
    }

    fn value(&mut self, what: &str) -> Result<String, ImportError> {
        match self.next() {
            Some(t) => Ok(t.text.clone()),
            None => Err(self.error(format!("expected {what} before `;`"))),
        }
    }

    fn number(&mut self, what: &str) -> Result<u64, ImportError> {
        let t = self.value(what)?;
        t.parse()
            .map_err(|_| self.error(format!("expected {what} (a number), found `{t}`")))
    }

    fn done(&self) -> bool {
        self.at >= self.tokens.len()
    }

    /// Words up to (not including) one of `stops`.
    fn words_until(&mut self, stops: &[&str]) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(t) = self.peek() {
            if stops.iter().any(|s| t.is(s)) {
                break;
            }
            out.push(t.text.clone());
            self.at += 1;
        }
        out
    }

    /// `send to <cluster ... | blackhole>` after `send`, then an optional `stop`.
    fn send_to(&mut self) -> Result<(Vec<String>, bool, bool), ImportError> {
        self.expect("to")?;
        let targets = self.words_until(&["stop"]);
        if targets.is_empty() {
            return Err(self.error("`send to` needs at least one cluster"));
        }
        let stop = self.peek_is("stop");
        if stop {
            self.at += 1;
        }
        let blackhole = targets.iter().any(|t| t == "blackhole");
        if blackhole && targets.len() > 1 {
            return Err(self.error("`blackhole` cannot be combined with other clusters"));
        }
        Ok((targets, blackhole, stop))
    }
}

/// The parsed statements of a file and what it includes, in order.
fn parse_file(
    path: &Path,
    depth: usize,
    out: &mut Vec<Statement>,
    files: &mut Vec<PathBuf>,
) -> Result<(), ImportError> {
    let text = read(path)?;
    let file = path.display().to_string();
    files.push(path.to_owned());
    let tokens = lex(&text, &file)?;
    let mut start = 0;
    for (i, t) in tokens.iter().enumerate() {
        if t.is(";") {
            parse_statement(&tokens[start..i], &file, path, depth, out, files)?;
            start = i + 1;
        }
    }
    if let Some(t) = tokens.get(start) {
        return Err(ImportError::syntax(
            &file,
            t.line,
            format!("statement `{}` is not ended by `;`", t.text),
        ));
    }
    Ok(())
}

fn parse_statement(
    tokens: &[Token],
    file: &str,
    path: &Path,
    depth: usize,
    out: &mut Vec<Statement>,
    files: &mut Vec<PathBuf>,
) -> Result<(), ImportError> {
    let Some(first) = tokens.first() else {
        return Ok(());
    };
    let text = shorten(
        &tokens
            .iter()
            .map(|t| {
                if t.quoted {
                    format!("\"{}\"", t.text)
                } else {
                    t.text.clone()
                }
            })
            .collect::<Vec<_>>()
            .join(" "),
    );
    let mut c = Cursor {
        tokens: &tokens[1..],
        at: 0,
        file,
        line: first.line,
    };
    let body = match first.text.as_str() {
        _ if first.quoted => return Err(c.error("a statement cannot start with a string")),
        "cluster" => Body::Cluster(parse_cluster(&mut c)?),
        "match" => Body::Match(parse_match(&mut c)?),
        "rewrite" => {
            let pattern = c.value("a regular expression")?;
            c.expect("into")?;
            let into = c.value("a replacement")?;
            Body::Rewrite { pattern, into }
        }
        "aggregate" => Body::Aggregate(parse_aggregate(&mut c)?),
        "listen" => Body::Listen(parse_listen(&mut c)?),
        "statistics" => Body::Statistics(parse_statistics(&mut c)?),
        "send" if c.peek_is("statistics") => {
            c.at += 1;
            c.expect("to")?;
            let send_to = c.words_until(&["stop"]);
            if c.peek_is("stop") {
                c.at += 1;
            }
            Body::Statistics(Statistics {
                send_to,
                ..Statistics::default()
            })
        }
        "include" => {
            let pattern = c.value("a file or glob")?;
            if !c.done() {
                return Err(c.error("`include` takes one file or glob"));
            }
            if depth >= MAX_INCLUDE_DEPTH {
                return Err(c.error(format!(
                    "include nested more than {MAX_INCLUDE_DEPTH} deep (a loop?)"
                )));
            }
            for included in expand_include(&pattern, path) {
                parse_file(&included, depth + 1, out, files)?;
            }
            return Ok(());
        }
        other => return Err(c.error(format!("unknown statement `{other}`"))),
    };
    if let Some(t) = c.peek() {
        return Err(c.error(format!("unexpected `{}`", t.text)));
    }
    out.push(Statement {
        file: file.to_owned(),
        line: first.line,
        text,
        body,
    });
    Ok(())
}

/// The files an `include` names: glob(3) on the path as given (carbon-c-relay reads it
/// relative to its working directory); a relative path that matches nothing there is tried
/// beside the including file. Wildcards only in the last component, sorted as glob sorts.
fn expand_include(pattern: &str, including: &Path) -> Vec<PathBuf> {
    let expand = |pattern: &Path| -> Vec<PathBuf> {
        let name = pattern
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !name.contains(['*', '?']) {
            return if pattern.is_file() {
                vec![pattern.to_owned()]
            } else {
                Vec::new()
            };
        }
        let dir = match pattern.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
            _ => PathBuf::from("."),
        };
        let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| super::glob_match(&name, &e.file_name().to_string_lossy()))
            .map(|e| dir.join(e.file_name()))
            .filter(|p| p.is_file())
            .collect();
        found.sort();
        found
    };
    let given = Path::new(pattern);
    let found = expand(given);
    if !found.is_empty() || given.is_absolute() {
        return found;
    }
    match including.parent() {
        Some(dir) => expand(&dir.join(given)),
        None => found,
    }
}

fn parse_cluster(c: &mut Cursor<'_>) -> Result<Cluster, ImportError> {
    let name = c.value("a cluster name")?;
    let kind_word = c.value("a cluster type")?;
    let kind = match kind_word.as_str() {
        "forward" => Kind::Forward,
        "any_of" => Kind::AnyOf,
        "failover" => Kind::Failover,
        "carbon_ch" => Kind::CarbonCh,
        "fnv1a_ch" => Kind::Fnv1aCh,
        "jump_fnv1a_ch" => Kind::JumpFnv1aCh,
        "file" => Kind::File,
        other => return Err(c.error(format!("unknown cluster type `{other}`"))),
    };
    let mut cluster = Cluster {
        name,
        kind,
        replication: 1,
        useall: false,
        dynamic: false,
        members: Vec::new(),
    };
    loop {
        if kind.hashing() && c.peek_is("replication") {
            c.at += 1;
            let r = c.number("a replication count")?;
            cluster.replication = u32::try_from(r)
                .ok()
                .filter(|&r| r >= 1)
                .ok_or_else(|| c.error("replication must be at least 1"))?;
        } else if kind.hashing() && c.peek_is("dynamic") {
            c.at += 1;
            cluster.dynamic = true;
        } else if matches!(kind, Kind::Forward | Kind::AnyOf | Kind::Failover)
            && c.peek_is("useall")
        {
            c.at += 1;
            cluster.useall = true;
        } else if kind == Kind::File && c.peek_is("ip") {
            c.at += 1;
        } else {
            break;
        }
    }
    while let Some(t) = c.next() {
        let last = cluster.members.last_mut();
        match (t.quoted, t.text.as_str(), last) {
            (false, "proto", Some(m)) => {
                let p = c.value("`udp` or `tcp`")?;
                match p.as_str() {
                    "udp" => m.udp = true,
                    "tcp" => m.udp = false,
                    _ => return Err(c.error(format!("unknown proto `{p}`"))),
                }
            }
            (false, "type", Some(_)) => {
                let t = c.value("`linemode`")?;
                if t != "linemode" {
                    return Err(c.error(format!("unknown member type `{t}`")));
                }
            }
            (false, "transport", Some(m)) => {
                let t = c.value("a transport")?;
                if !matches!(t.as_str(), "plain" | "gzip" | "lz4" | "snappy") {
                    return Err(c.error(format!("unknown transport `{t}`")));
                }
                m.transport = (t != "plain").then_some(t);
                if c.peek_is("ssl") {
                    c.at += 1;
                    m.ssl = true;
                }
            }
            (false, "=", Some(m)) => m.instance = Some(c.value("an instance")?),
            (_, word, _) => {
                let (address, instance) = match word.split_once('=') {
                    Some((a, i)) if kind != Kind::File => (a.to_owned(), Some(i.to_owned())),
                    _ => (word.to_owned(), None),
                };
                cluster.members.push(Member {
                    address,
                    instance: instance.filter(|i| !i.is_empty()),
                    ..Member::default()
                });
            }
        }
    }
    if cluster.members.is_empty() {
        return Err(c.error(format!("cluster `{}` has no members", cluster.name)));
    }
    Ok(cluster)
}

fn parse_match(c: &mut Cursor<'_>) -> Result<Match, ImportError> {
    let mut m = Match {
        patterns: c.words_until(&["validate", "route", "send", "stop"]),
        ..Match::default()
    };
    if m.patterns.is_empty() {
        return Err(c.error("`match` needs `*` or at least one expression"));
    }
    if c.peek_is("validate") {
        c.at += 1;
        let expr = c.value("a validation expression")?;
        c.expect("else")?;
        let action = c.value("`log` or `drop`")?;
        m.validate = Some(format!("validate {expr} else {action}"));
    }
    if c.peek_is("route") {
        c.at += 1;
        c.expect("using")?;
        m.route_using = Some(c.value("an expression")?);
    }
    if c.peek_is("send") {
        c.at += 1;
        let (targets, blackhole, stop) = c.send_to()?;
        m.blackhole = blackhole;
        m.stop = stop || blackhole;
        if !blackhole {
            m.send_to = targets;
        }
    } else if c.peek_is("stop") {
        c.at += 1;
        m.stop = true;
    }
    if m.send_to.is_empty() && !m.blackhole && m.validate.is_none() {
        return Err(c.error("`match` needs `send to`"));
    }
    Ok(m)
}

fn parse_aggregate(c: &mut Cursor<'_>) -> Result<Aggregate, ImportError> {
    let patterns = c.words_until(&["every"]);
    if patterns.is_empty() {
        return Err(c.error("`aggregate` needs at least one expression"));
    }
    c.expect("every")?;
    let every = c.number("an interval")?;
    c.expect("seconds")?;
    c.expect("expire")?;
    c.expect("after")?;
    let expire = c.number("an expiry")?;
    c.expect("seconds")?;
    let mut timestamp = None;
    if c.peek_is("timestamp") {
        c.at += 1;
        c.expect("at")?;
        let at = c.value("`start`, `middle` or `end`")?;
        if !matches!(at.as_str(), "start" | "middle" | "end") {
            return Err(c.error(format!("unknown timestamp position `{at}`")));
        }
        c.expect("of")?;
        c.expect("bucket")?;
        timestamp = Some(at);
    }
    let mut computes = Vec::new();
    while c.peek_is("compute") {
        c.at += 1;
        let f = c.value("a function")?;
        let function = match f.as_str() {
            "sum" | "summary" => "sum".to_owned(),
            "count" | "cnt" => "count".to_owned(),
            "max" | "maximum" => "max".to_owned(),
            "min" | "minimum" => "min".to_owned(),
            "average" | "avg" => "average".to_owned(),
            "median" => "median".to_owned(),
            "variance" => "variance".to_owned(),
            "stddev" => "stddev".to_owned(),
            p if p.starts_with("percentile") => {
                let n: u32 = p["percentile".len()..].parse().unwrap_or(0);
                if !(1..=99).contains(&n) {
                    return Err(c.error("percentile<x>: value x must be between 1 and 99"));
                }
                format!("percentile{n}")
            }
            other => return Err(c.error(format!("unknown aggregate function `{other}`"))),
        };
        c.expect("write")?;
        c.expect("to")?;
        let write_to = c.value("a metric name")?;
        computes.push(Compute { function, write_to });
    }
    if computes.is_empty() {
        return Err(c.error("`aggregate` needs at least one `compute`"));
    }
    let mut send_to = Vec::new();
    let mut stop = false;
    if c.peek_is("send") {
        c.at += 1;
        let (targets, blackhole, s) = c.send_to()?;
        if blackhole {
            return Err(c.error("an aggregate cannot send to blackhole"));
        }
        send_to = targets;
        stop = s;
    } else if c.peek_is("stop") {
        c.at += 1;
        stop = true;
    }
    Ok(Aggregate {
        patterns,
        every,
        expire,
        timestamp,
        computes,
        send_to,
        stop,
    })
}

fn parse_statistics(c: &mut Cursor<'_>) -> Result<Statistics, ImportError> {
    let mut st = Statistics::default();
    while let Some(t) = c.peek() {
        match t.text.as_str() {
            "submit" => {
                c.at += 1;
                c.expect("every")?;
                st.every = Some(c.number("an interval")?);
                c.expect("seconds")?;
            }
            "reset" => {
                c.at += 1;
                c.expect("counters")?;
                c.expect("after")?;
                c.expect("interval")?;
                st.reset = true;
            }
            "prefix" => {
                c.at += 1;
                c.expect("with")?;
                st.prefix = Some(c.value("a prefix")?);
            }
            "send" => {
                c.at += 1;
                let (targets, _, _) = c.send_to()?;
                st.send_to = targets;
            }
            "stop" => c.at += 1,
            other => return Err(c.error(format!("unexpected `{other}` in statistics"))),
        }
    }
    Ok(st)
}

/// carbon-c-relay's statistics prefix, a replacement on its host name matched by
/// `^(([^.]+)(\..*)?)$`, as fluxgate's `graphite_prefix`: `\.1` (the host, dots as `_`) is
/// `<host>`, `\2` (the short host) `<host_short>`.
fn convert_prefix(prefix: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = prefix.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let mut flags = String::new();
        while let Some(f) = chars.peek().filter(|f| matches!(f, '_' | '^' | '.')) {
            flags.push(*f);
            chars.next();
        }
        let mut n = String::new();
        while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
            n.push(*d);
            chars.next();
        }
        match (flags.as_str(), n.as_str()) {
            (".", "1") => out.push_str("<host>"),
            ("" | ".", "2") => out.push_str("<host_short>"),
            (_, "") => {
                if let Some(x) = chars.next() {
                    out.push(x);
                }
            }
            (f, n) => {
                return Err(format!(
                    "`\\{f}{n}` in the prefix has no equivalent (fluxgate offers <host>, the host \
                     name with dots as _, and <host_short>)"
                ))
            }
        }
    }
    Ok(out)
}

fn parse_listen(c: &mut Cursor<'_>) -> Result<Listen, ImportError> {
    c.expect("type")?;
    c.expect("linemode")?;
    let mut listen = Listen {
        transport: None,
        ssl: None,
        addresses: Vec::new(),
    };
    if c.peek_is("transport") {
        c.at += 1;
        let t = c.value("a transport")?;
        if !matches!(t.as_str(), "plain" | "gzip" | "lz4" | "snappy") {
            return Err(c.error(format!("unknown transport `{t}`")));
        }
        listen.transport = (t != "plain").then_some(t);
        if c.peek_is("ssl") {
            c.at += 1;
            listen.ssl = Some(c.value("a PEM certificate file")?);
        }
    }
    while let Some(t) = c.next() {
        let address = t.text.clone();
        c.expect("proto")?;
        let proto = c.value("`tcp`, `udp` or `unix`")?;
        if !matches!(proto.as_str(), "tcp" | "udp" | "unix") {
            return Err(c.error(format!("unknown proto `{proto}`")));
        }
        listen.addresses.push(ListenAddr { address, proto });
    }
    if listen.addresses.is_empty() {
        return Err(c.error("`listen` needs at least one address"));
    }
    Ok(listen)
}

/// `host[:port]` or `[v6]:port` or `v6:port` (the last `:` starts the port) as fluxgate's
/// `host:port`, with carbon-c-relay's default port 2003.
fn member_destination(address: &str) -> Result<(String, u16), String> {
    let (host, port) = if let Some(rest) = address.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("{address:?}: missing `]`"))?;
        match after.strip_prefix(':') {
            Some(p) => (host.to_owned(), Some(p)),
            None if after.is_empty() => (host.to_owned(), None),
            None => return Err(format!("{address:?}: unexpected text after `]`")),
        }
    } else {
        match address.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (address.to_owned(), None),
        }
    };
    let port = match port {
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| format!("{address:?}: invalid port {p:?}"))?,
        None => 2003,
    };
    if host.is_empty() {
        return Err(format!("{address:?}: empty host"));
    }
    Ok((host, port))
}

fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// A carbon-c-relay `listen` address (`port`, `iface:port`, `[v6]:port`) as a socket
/// address; no interface is every interface.
fn listen_address(address: &str) -> Result<String, String> {
    if address.bytes().all(|b| b.is_ascii_digit()) {
        let port: u16 = address
            .parse()
            .map_err(|_| format!("invalid port {address:?}"))?;
        return Ok(format!("0.0.0.0:{port}"));
    }
    let (host, port) = member_destination(address)?;
    Ok(host_port(&host, port))
}

/// A carbon-c-relay replacement in fluxgate's syntax. carbon-c-relay reads `\N` (N > 0) as
/// group N, `\_N` / `\^N` as it lower- / upper-cased, `\.N` (and `\_.N`, `\^.N`) with dots
/// made underscores, `\0` as nothing and any other `\x` as `x`; everything else, `$`
/// included, is literal.
fn convert_replacement(into: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = into.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let mut case = "";
                match chars.peek() {
                    Some('_') => {
                        case = "_";
                        chars.next();
                    }
                    Some('^') => {
                        case = "^";
                        chars.next();
                    }
                    _ => {}
                }
                if chars.peek() == Some(&'.') {
                    return Err(format!(
                        "`\\{case}.` (dots of a group made underscores) has no fluxgate equivalent"
                    ));
                }
                let mut digits = String::new();
                while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    digits.push(*d);
                    chars.next();
                }
                if digits.is_empty() {
                    // `\x` (or `\_x`): the character itself.
                    if let Some(x) = chars.next() {
                        push_literal(&mut out, x);
                    }
                    continue;
                }
                let n: usize = digits.parse().unwrap_or(0);
                if n == 0 {
                    continue;
                }
                if case.is_empty() {
                    out.push_str(&format!("${{{n}}}"));
                } else {
                    out.push_str(&format!("\\{case}{n}"));
                }
            }
            c => push_literal(&mut out, c),
        }
    }
    Ok(out)
}

fn push_literal(out: &mut String, c: char) {
    match c {
        '\\' => out.push_str("\\\\"),
        '$' => out.push_str("$$"),
        c => out.push(c),
    }
}

/// Imports the carbon-c-relay configuration at `path` (and what it includes).
pub fn import(path: &Path) -> Result<Imported, ImportError> {
    let mut statements = Vec::new();
    let mut files = Vec::new();
    parse_file(path, 0, &mut statements, &mut files)?;
    let mut problems = Vec::new();
    let problem = |s: &Statement, reason: String| Problem {
        file: s.file.clone(),
        line: s.line,
        statement: s.text.clone(),
        reason,
    };

    // Clusters first: names must be known to check routes.
    let mut clusters: Vec<(&Statement, &Cluster)> = Vec::new();
    let mut imported: HashSet<String> = HashSet::new();
    let mut defined: HashSet<String> = HashSet::new();
    let mut outputs = Doc::default();
    for s in &statements {
        let Body::Cluster(cl) = &s.body else { continue };
        if !defined.insert(cl.name.clone()) {
            return Err(ImportError::syntax(
                &s.file,
                s.line,
                format!("cluster `{}` is defined twice", cl.name),
            ));
        }
        clusters.push((s, cl));
        match cluster_output(cl) {
            Ok(text) => {
                imported.insert(cl.name.clone());
                outputs.blank();
                outputs.comment(&format!("{}:{}: {}", s.file, s.line, s.text));
                outputs.out.push_str(&text);
            }
            Err(reason) => {
                let p = problem(s, reason);
                outputs.blank();
                outputs.not_imported(&p);
                problems.push(p);
            }
        }
    }
    let check_targets = |s: &Statement, targets: &[String]| -> Result<(), ImportError> {
        for t in targets {
            if !defined.contains(t) {
                return Err(ImportError::syntax(
                    &s.file,
                    s.line,
                    format!("unknown cluster `{t}`"),
                ));
            }
        }
        Ok(())
    };

    let mut listeners = Doc::default();
    let mut rewrites = Doc::default();
    let mut rules = Doc::default();
    let (mut tcp, mut udp, mut tls): (Option<String>, Option<String>, Option<String>) =
        (None, None, None);
    let mut any_listen = false;
    let mut any_match = false;
    // Lines of the first match rule, the first that stops, and the first aggregate: fluxgate
    // runs every rewrite, then every aggregate, then the routes, so a statement that
    // carbon-c-relay runs later than one of another kind can only be carried over where the
    // order makes no difference.
    let mut match_seen: Option<usize> = None;
    let mut stop_seen: Option<usize> = None;
    let mut aggregate_seen: Option<usize> = None;
    let mut stats_interval = 60;
    let mut stats_reset = false;
    let mut stats_prefix = "carbon.relays.<host>".to_owned();
    for s in &statements {
        match &s.body {
            Body::Cluster(_) => {}
            Body::Statistics(st) => {
                check_targets(s, &st.send_to)?;
                if let Some(i) = st.every {
                    stats_interval = i;
                }
                stats_reset |= st.reset;
                if let Some(p) = &st.prefix {
                    match convert_prefix(p) {
                        Ok(p) => stats_prefix = p,
                        Err(reason) => problems.push(problem(s, reason)),
                    }
                }
                if !st.send_to.is_empty() {
                    problems.push(problem(
                        s,
                        format!(
                            "fluxgate routes its own metrics by [[routes]] like any others; \
                             carbon-c-relay sends them only to {}",
                            st.send_to.join(", ")
                        ),
                    ));
                }
            }
            Body::Listen(l) => {
                any_listen = true;
                for a in &l.addresses {
                    let one = |reason: String| {
                        problem(s, format!("{} ({}): {reason}", a.address, a.proto))
                    };
                    if a.proto == "unix" {
                        problems.push(one("fluxgate has no unix-socket listener".into()));
                        continue;
                    }
                    if let Some(t) = &l.transport {
                        problems.push(one(format!(
                            "fluxgate listeners do not decompress `{t}` streams"
                        )));
                        continue;
                    }
                    let address = match listen_address(&a.address) {
                        Ok(addr) => addr,
                        Err(e) => {
                            problems.push(one(e));
                            continue;
                        }
                    };
                    let slot = if a.proto == "tcp" { &mut tcp } else { &mut udp };
                    if let Some(first) = slot {
                        problems.push(one(format!(
                            "fluxgate has one plaintext {} listener, already {first}",
                            a.proto
                        )));
                        continue;
                    }
                    *slot = Some(address);
                    if a.proto == "tcp" {
                        tls.clone_from(&l.ssl);
                    } else if l.ssl.is_some() {
                        problems.push(one("UDP cannot carry TLS".into()));
                    }
                }
            }
            Body::Rewrite { pattern, into } => {
                if let Some(line) = match_seen {
                    let p = problem(
                        s,
                        format!(
                            "it follows a match rule (line {line}); fluxgate rewrites every \
                             name before any routing, so the rules above would see the \
                             rewritten name"
                        ),
                    );
                    rewrites.blank();
                    rewrites.not_imported(&p);
                    problems.push(p);
                    continue;
                }
                let checked = regex::Regex::new(pattern)
                    .map_err(|e| format!("regular expression {pattern:?}: {e}"))
                    .and_then(|_| convert_replacement(into));
                match checked {
                    Ok(replace) => {
                        rewrites.blank();
                        rewrites.comment(&format!("{}:{}: {}", s.file, s.line, s.text));
                        rewrites.array_table("rewrite");
                        rewrites.string("match", pattern, None);
                        rewrites.string("replace", &replace, None);
                        if let Some(line) = aggregate_seen {
                            // After the aggregates (line {line}): on the inputs going on to
                            // the routes. carbon-c-relay would also rewrite aggregates that
                            // re-enter it without `send to`; fluxgate does not.
                            rewrites.string(
                                "stage",
                                "post",
                                Some(&format!("after the aggregate of line {line}")),
                            );
                        }
                    }
                    Err(reason) => {
                        let p = problem(s, reason);
                        rewrites.blank();
                        rewrites.not_imported(&p);
                        problems.push(p);
                    }
                }
            }
            Body::Match(m) => {
                any_match = true;
                match_seen.get_or_insert(s.line);
                if m.stop || m.blackhole {
                    stop_seen.get_or_insert(s.line);
                }
                check_targets(s, &m.send_to)?;
                let mut unsupported = Vec::new();
                if let Some(v) = &m.validate {
                    unsupported.push(format!(
                        "`{v}`: fluxgate does not check the value part with an expression"
                    ));
                }
                if let Some(r) = &m.route_using {
                    unsupported.push(format!(
                        "`route using {r}`: fluxgate hashes the name itself"
                    ));
                }
                for p in &m.patterns {
                    if p != "*" {
                        if let Err(e) = regex::Regex::new(p) {
                            unsupported.push(format!("regular expression {p:?}: {e}"));
                        }
                    }
                }
                let missing: Vec<&String> = m
                    .send_to
                    .iter()
                    .filter(|t| !imported.contains(*t))
                    .collect();
                for t in &missing {
                    unsupported.push(format!("cluster `{t}` is not imported"));
                }
                rules.blank();
                if !unsupported.is_empty() {
                    let p = problem(s, unsupported.join("; "));
                    rules.not_imported(&p);
                    problems.push(p);
                    continue;
                }
                rules.comment(&format!("{}:{}: {}", s.file, s.line, s.text));
                rules.array_table("routes");
                if m.patterns.len() == 1 {
                    rules.string("match", &m.patterns[0], None);
                } else {
                    rules.raw("match", &quote_all(&m.patterns), None);
                }
                if m.blackhole {
                    rules.raw("drop", "true", Some("send to blackhole"));
                } else {
                    rules.raw("outputs", &quote_all(&m.send_to), None);
                    if m.stop {
                        rules.raw("stop", "true", None);
                    }
                }
            }
            Body::Aggregate(a) => {
                aggregate_seen.get_or_insert(s.line);
                check_targets(s, &a.send_to)?;
                let mut unsupported = Vec::new();
                if let Some(line) = stop_seen {
                    unsupported.push(format!(
                        "the match rule of line {line} stops names before they reach it in \
                         carbon-c-relay; fluxgate aggregates before any route"
                    ));
                } else if let (true, Some(line)) = (a.stop, match_seen) {
                    unsupported.push(format!(
                        "its `stop` would keep names from the match rule of line {line} too, \
                         which fluxgate runs after aggregation"
                    ));
                }
                for p in &a.patterns {
                    if let Err(e) = regex::Regex::new(p) {
                        unsupported.push(format!("regular expression {p:?}: {e}"));
                    }
                }
                for t in a.send_to.iter().filter(|t| !imported.contains(*t)) {
                    unsupported.push(format!("cluster `{t}` is not imported"));
                }
                rules.blank();
                if !unsupported.is_empty() {
                    let p = problem(s, unsupported.join("; "));
                    rules.not_imported(&p);
                    problems.push(p);
                    continue;
                }
                rules.comment(&format!("{}:{}: {}", s.file, s.line, s.text));
                rules.array_table("aggregate");
                rules.raw("match", &quote_all(&a.patterns), None);
                rules.string("every", &format!("{}s", a.every), None);
                rules.string("expire", &format!("{}s", a.expire), None);
                if let Some(t) = &a.timestamp {
                    rules.string("timestamp", t, None);
                }
                let computes: Vec<String> = a
                    .computes
                    .iter()
                    .map(|c| {
                        format!(
                            "{{ fn = {}, write_to = {} }}",
                            quote(&c.function),
                            quote(&c.write_to)
                        )
                    })
                    .collect();
                rules.raw("compute", &format!("[{}]", computes.join(", ")), None);
                if !a.send_to.is_empty() {
                    rules.raw("send_to", &quote_all(&a.send_to), None);
                }
                if a.stop {
                    rules.raw("stop", "true", None);
                }
            }
        }
    }

    let order = |file: &str| files.iter().position(|f| f.display().to_string() == file);
    problems.sort_by_key(|p| (order(&p.file), p.line));

    listeners.table("listeners.plaintext");
    if any_listen {
        if let Some(t) = &tcp {
            listeners.string("tcp", t, None);
        }
        if let Some(u) = &udp {
            listeners.string("udp", u, None);
        }
        if let Some(pem) = &tls {
            listeners.string("tls_cert", pem, Some("carbon-c-relay's ssl <pemcert>"));
            listeners.string("tls_key", pem, Some("the key is read from the same file"));
        }
    } else {
        listeners.comment(
            "No `listen`: carbon-c-relay's defaults, port 2003 over TCP and UDP on every\n\
             interface (its unix socket /tmp/.s.carbon-c-relay.2003 has no equivalent).",
        );
        listeners.string("tcp", "0.0.0.0:2003", None);
        listeners.string("udp", "0.0.0.0:2003", None);
    }
    // carbon-c-relay accepts a line up to 32 KiB (-M) and speaks no pickle.
    listeners.raw(
        "max_line_bytes",
        "32768",
        Some("carbon-c-relay's -M default"),
    );
    listeners.blank();
    listeners.comment(
        "fluxgate's HTTP listener (/metrics, /health, InfluxDB writes) keeps its default,\n\
         127.0.0.1:8086; set [listeners.http] address to move it.",
    );

    let mut doc = Doc::default();
    doc.comment(&format!(
        "fluxgate configuration imported from carbon-c-relay's {}\n\
         (`fluxgate import carbon-c-relay`). Every statement is named above what it became.",
        files
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    doc.problems(&problems);
    doc.blank();
    doc.out.push_str(&listeners.finish());
    doc.blank();
    doc.comment(
        "carbon-c-relay injects its own statistics into its routing (unless it runs with -s:\n\
         then delete graphite_prefix), under carbon-c-relay's names.",
    );
    doc.table("telemetry");
    doc.string("graphite_prefix", &stats_prefix, Some("prefix with"));
    doc.string(
        "interval",
        &format!("{stats_interval}s"),
        Some("submit every"),
    );
    doc.raw(
        "reset_counters",
        &stats_reset.to_string(),
        Some("reset counters after interval"),
    );
    doc.blank();
    doc.comment(
        "carbon-c-relay cleanses every name on arrival: characters outside [A-Za-z0-9] and\n\
         its -c set become `_`, and repeated, leading and trailing dots are removed.",
    );
    doc.table("graphite");
    doc.string("validation", "cleanse", None);
    doc.string("allowed_chars", crate::route::DEFAULT_ALLOWED_CHARS, None);
    doc.blank();
    doc.out.push_str(&outputs.finish());
    doc.blank();
    doc.out.push_str(&rewrites.finish());
    doc.blank();
    if !any_match {
        doc.comment("carbon-c-relay sends nothing a match rule does not send somewhere.");
        rules.blank();
        rules.array_table("routes");
        rules.string("match", "*", None);
        rules.raw("drop", "true", None);
    } else {
        doc.comment(
            "Rules in carbon-c-relay's order. As there, a name no rule matches goes nowhere\n\
             (fluxgate counts it in fluxgate_unrouted_total).",
        );
    }
    doc.out.push_str(&rules.finish());
    doc.blank();
    Ok(Imported {
        config: doc.finish(),
        problems,
    })
}

/// One `[[outputs.graphite]]` for a cluster, or why it cannot be one.
fn cluster_output(cl: &Cluster) -> Result<String, String> {
    if cl.kind == Kind::File {
        return Err("fluxgate does not write metrics to files".into());
    }
    if cl.useall {
        return Err(
            "`useall` (one destination per address a name resolves to) has no equivalent; \
             list the addresses as members"
                .into(),
        );
    }
    if cl.dynamic {
        return Err(
            "`dynamic` (undeliverable metrics sent to other members) has no equivalent: \
             fluxgate queues them for their own member"
                .into(),
        );
    }
    let mut destinations = Vec::new();
    let mut tls = None;
    for m in &cl.members {
        if m.udp {
            return Err(format!(
                "member {}: fluxgate sends to carbon over TCP only",
                m.address
            ));
        }
        if let Some(t) = &m.transport {
            return Err(format!(
                "member {}: fluxgate does not compress with `{t}`",
                m.address
            ));
        }
        match tls {
            None => tls = Some(m.ssl),
            Some(t) if t != m.ssl => {
                return Err(
                    "some members use ssl and some do not; a fluxgate output is one or the other"
                        .into(),
                )
            }
            Some(_) => {}
        }
        let (host, port) = member_destination(&m.address)?;
        let mut d = host_port(&host, port);
        if let Some(i) = &m.instance {
            d.push(':');
            d.push_str(i);
        }
        d.parse::<crate::cluster::Destination>()
            .map_err(|e| e.to_string())?;
        destinations.push(d);
    }
    let mut doc = Doc::default();
    doc.array_table("outputs.graphite");
    doc.string("name", &cl.name, None);
    doc.string(
        "protocol",
        "plaintext",
        Some("carbon-c-relay speaks the line protocol"),
    );
    let note = (cl.kind == Kind::CarbonCh)
        .then_some("carbon-c-relay's carbon_ch: colliding ring positions kept");
    doc.string("cluster", cl.kind.fluxgate(), note);
    if cl.kind.hashing() {
        doc.raw("replication", &cl.replication.to_string(), None);
    }
    doc.raw("destinations", &quote_all(&destinations), None);
    if tls == Some(true) {
        doc.raw("tls", "true", None);
    }
    Ok(doc.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn import_text(text: &str) -> Imported {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.conf");
        std::fs::write(&path, text).unwrap();
        import(&path).unwrap()
    }

    #[test]
    fn lexes_as_carbon_c_relay_does() {
        let t = lex("match ^a\\ b # c\n  \"x\\\"y\" ;", "f").unwrap();
        let texts: Vec<(&str, bool, usize)> = t
            .iter()
            .map(|t| (t.text.as_str(), t.quoted, t.line))
            .collect();
        assert_eq!(
            texts,
            [
                ("match", false, 1),
                ("^a\\ b", false, 1),
                ("x\"y", true, 2),
                (";", false, 2)
            ]
        );
        assert!(lex("a \"b\nc\";", "f").is_err());
    }

    #[test]
    fn replacements() {
        assert_eq!(
            convert_replacement("a.\\1.\\_2.\\^3").unwrap(),
            "a.${1}.\\_2.\\^3"
        );
        assert_eq!(convert_replacement("$x\\y\\0z").unwrap(), "$$xyz");
        assert_eq!(convert_replacement("\\12b").unwrap(), "${12}b");
        assert!(convert_replacement("\\.1").is_err());
        assert!(convert_replacement("\\_.1").is_err());
    }

    #[test]
    fn destinations() {
        assert_eq!(member_destination("h").unwrap(), ("h".into(), 2003));
        assert_eq!(member_destination("h:2004").unwrap(), ("h".into(), 2004));
        assert_eq!(member_destination("[::1]").unwrap(), ("::1".into(), 2003));
        assert_eq!(
            member_destination("::1:2005").unwrap(),
            ("::1".into(), 2005)
        );
        assert_eq!(listen_address("2003").unwrap(), "0.0.0.0:2003");
        assert_eq!(listen_address("127.0.0.1:2013").unwrap(), "127.0.0.1:2013");
    }

    #[test]
    fn a_whole_config_maps_and_loads() {
        let out = import_text(
            "cluster ch carbon_ch replication 2\n  127.0.0.1:2104=a 127.0.0.1:2204 = b ;\n\
             cluster f forward 10.0.0.1 ;\n\
             listen type linemode 127.0.0.1:2013 proto tcp 2013 proto udp ;\n\
             rewrite ^old\\.(.*) into new.\\_1 ;\n\
             match ^sys\\. send to f stop;\n\
             match ^junk send to blackhole;\n\
             match * send to ch ;\n",
        );
        assert!(out.problems.is_empty(), "{:?}", out.problems);
        let c = crate::Config::from_toml(&out.config, "imported").unwrap();
        assert_eq!(c.outputs.graphite.len(), 2);
        assert_eq!(
            c.outputs.graphite[0].destinations,
            ["127.0.0.1:2104:a", "127.0.0.1:2204:b"]
        );
        assert_eq!(
            c.outputs.graphite[0].cluster,
            crate::cluster::ClusterKind::CarbonChCompat
        );
        assert_eq!(c.outputs.graphite[1].destinations, ["10.0.0.1:2003"]);
        assert_eq!(c.routes.len(), 3);
        assert!(c.routes[1].drop && c.routes[0].stop && !c.routes[2].stop);
        assert_eq!(c.rewrite[0].replace, "new.\\_1");
        assert_eq!(c.listeners.plaintext.tcp.as_deref(), Some("127.0.0.1:2013"));
        assert_eq!(c.listeners.plaintext.udp.as_deref(), Some("0.0.0.0:2013"));
    }

    #[test]
    fn unmappable_statements_are_listed_with_lines() {
        let out = import_text(
            "cluster f file /tmp/x ;\ncluster u forward 1.2.3.4 proto udp ;\n\
             cluster ok forward 1.2.3.4 ;\n\
             match a validate ^[0-9] else drop send to ok ;\n\
             match b send to f ;\nmatch * send to ok;\n\
             rewrite a into b ;\nstatistics submit every 10 seconds ;\n\
             listen type linemode /tmp/s proto unix ;\n",
        );
        let lines: Vec<usize> = out.problems.iter().map(|p| p.line).collect();
        assert_eq!(lines, [1, 2, 4, 5, 7, 9], "{:#?}", out.problems);
        assert!(out.config.contains("NOT IMPORTED"));
        crate::Config::from_toml(&out.config, "imported").unwrap();
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.conf");
        std::fs::write(&path, "cluster a forward 1.2.3.4;\nmatch * send to b;\n").unwrap();
        let e = import(&path).unwrap_err().to_string();
        assert!(e.ends_with(":2: unknown cluster `b`"), "{e}");
        std::fs::write(&path, "cluster a\n  round_robin 1.2.3.4;\n").unwrap();
        let e = import(&path).unwrap_err().to_string();
        assert!(e.contains(":2: unknown cluster type `round_robin`"), "{e}");
    }

    #[test]
    fn includes_are_read_in_place() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.conf"), "cluster a forward 1.2.3.4;\n").unwrap();
        std::fs::write(dir.path().join("b.conf"), "cluster b forward 1.2.3.5;\n").unwrap();
        let main = dir.path().join("main.conf");
        std::fs::write(
            &main,
            "include *.conf.d ;\ninclude ?.conf;\nmatch * send to a b;\n",
        )
        .unwrap();
        let out = import(&main).unwrap();
        let c = crate::Config::from_toml(&out.config, "imported").unwrap();
        assert_eq!(c.output_names(), ["a", "b"]);
    }

    #[test]
    fn statement_order_is_kept_or_reported() {
        let out = import_text(
            "cluster a forward 1.2.3.4;\n\
             aggregate ^x\\.(.*) every 10 seconds expire after 20 seconds compute sum write to s.\\1 ;\n\
             rewrite ^y into z ;\n\
             match ^b send to a stop ;\n\
             aggregate ^w every 10 seconds expire after 20 seconds compute sum write to w ;\n\
             match * send to a ;\n",
        );
        let lines: Vec<usize> = out.problems.iter().map(|p| p.line).collect();
        assert_eq!(lines, [5], "{:#?}", out.problems);
        let doc: toml::Value = toml::from_str(&out.config).unwrap();
        assert_eq!(doc["rewrite"][0]["stage"].as_str(), Some("post"));
        crate::Config::from_toml(&out.config, "imported").unwrap();
    }

    #[test]
    fn statistics_become_telemetry() {
        assert_eq!(
            convert_prefix("carbon.relays.\\.1").unwrap(),
            "carbon.relays.<host>"
        );
        assert_eq!(
            convert_prefix("relays.\\2.x").unwrap(),
            "relays.<host_short>.x"
        );
        assert!(convert_prefix("relays.\\1").is_err());
        let out = import_text(
            "cluster a forward 1.2.3.4;\nmatch * send to a;\n\
             statistics submit every 10 seconds reset counters after interval prefix with r.\\2 ;\n",
        );
        assert!(out.problems.is_empty(), "{:?}", out.problems);
        let c = crate::Config::from_toml(&out.config, "imported").unwrap();
        assert_eq!(
            c.telemetry.graphite_prefix.as_deref(),
            Some("r.<host_short>")
        );
        assert_eq!(c.telemetry.interval, std::time::Duration::from_secs(10));
        assert!(c.telemetry.reset_counters);
        let out = import_text("cluster a forward 1.2.3.4;\nsend statistics to a stop;\n");
        assert_eq!(out.problems.len(), 1);
    }

    #[test]
    fn no_match_rule_sends_nothing() {
        let out = import_text("cluster a forward 1.2.3.4;\n");
        let c = crate::Config::from_toml(&out.config, "imported").unwrap();
        assert!(c.routes[0].drop);
    }
}
