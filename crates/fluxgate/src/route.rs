//! Name cleansing, rewriting and routing, with carbon-c-relay's semantics where it has them.
//!
//! A point goes through three steps, each configured separately:
//!
//! 1. **Cleansing** (`validation`, Graphite names only). `none` keeps names as they came (what
//!    carbon-relay does). `cleanse` is carbon-c-relay's input cleansing: leading, trailing and
//!    repeated dots are removed and every byte of the path outside `[A-Za-z0-9]` and the
//!    allowed characters (`-_:#` by default, carbon-c-relay's `-c`) becomes `_`; the tags after
//!    the first `;` are left alone. It works byte by byte as carbon-c-relay does, so `é` (two
//!    bytes) becomes `__` and a cluster fed by both relays hashes the same names. `encode` runs
//!    each dot-separated segment through the metric-name encoder instead, which loses nothing:
//!    `web 01` becomes `web%2001`, `café` becomes `xn--caf-dma`, and a segment that already is
//!    encoder output (`%2E`, `xn--…`) stays as it is, so names encoded upstream pass unchanged.
//! 2. **Rewriting** (`[[rewrite]]`): each rule in turn, on the result of the previous one,
//!    replaces the *first* match of its regex in the path by its replacement, keeping the text
//!    around the match, as carbon-c-relay's `rewrite … into …` does. References are `\1` (and
//!    `\_1` / `\^1` for a lower- / upper-cased copy, ASCII only as carbon-c-relay's `tolower`)
//!    or `$1`, `${1}`, `${name}`; `\0`/`$0` is the whole match. Unlike carbon-c-relay, where a
//!    rewrite sits between match rules, all rewrites run before routing, and a reference to a
//!    group the regex does not have is a configuration error instead of empty text.
//! 3. **Routing** (`[[routes]]`): rules are tried top to bottom. A rule matches with `match`
//!    (regexes, unanchored as in carbon-c-relay; `"*"` matches everything) or `prefix` (plain
//!    string prefixes, cheaper). A matching rule adds its `outputs` and processing falls
//!    through to the next rule unless it has `stop = true`. `drop = true` is carbon-c-relay's
//!    `send to blackhole`: processing stops and the point goes nowhere else (outputs chosen by
//!    earlier rules keep it, exactly as in carbon-c-relay). With no rules at all, every point
//!    goes to every output; with rules, a point no rule matched goes nowhere and is reported
//!    as `unrouted` (carbon-c-relay silently blackholes it) for the caller to count.
//!
//! What a rule looks at: a Graphite point (plaintext or pickle) is matched on its path, a
//! line-protocol point on its measurement. `on = "path"` or `on = "measurement"` restricts a
//! rule to one of the two; the default `on = "any"` takes each point by its own key. A
//! Graphite path is matched without its tags (the part before the first `;`), as
//! carbon-c-relay does, and rewrites keep the tags after the rewritten path.
//!
//! Regexes use the `regex` crate's syntax, which agrees with the POSIX extended expressions of
//! carbon-c-relay for what routing rules use (classes, `[[:alpha:]]`, anchors, groups,
//! repetition); neither has backreferences in patterns or look-around.

use std::fmt;

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::translate::influx::SegmentEncoder;

#[cfg(test)]
mod tests;

/// The most outputs a route can address ([`OutputSet`] is a 64-bit set).
pub const MAX_OUTPUTS: usize = 64;

/// carbon-c-relay's default for `-c`: allowed next to `[A-Za-z0-9]`.
pub const DEFAULT_ALLOWED_CHARS: &str = "-_:#";

/// One or more patterns: `match = "^a\\."` or `match = ["^a\\.", "^b\\."]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Patterns {
    One(String),
    Many(Vec<String>),
}

impl Patterns {
    pub fn as_slice(&self) -> &[String] {
        match self {
            Self::One(p) => std::slice::from_ref(p),
            Self::Many(p) => p,
        }
    }
}

impl<'de> Deserialize<'de> for Patterns {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Patterns;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an array of strings")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Patterns, E> {
                Ok(Patterns::One(v.to_owned()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Patterns, A::Error> {
                let mut all = Vec::new();
                while let Some(p) = seq.next_element::<String>()? {
                    all.push(p);
                }
                Ok(Patterns::Many(all))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// Which points a route rule considers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteOn {
    /// Graphite points by their path, line-protocol points by their measurement.
    #[default]
    Any,
    /// Graphite points only (plaintext, pickle), by their path.
    Path,
    /// Line-protocol points only, by their measurement.
    Measurement,
}

impl RouteOn {
    fn applies(self, origin: Origin) -> bool {
        match self {
            Self::Any => true,
            Self::Path => origin == Origin::Graphite,
            Self::Measurement => origin == Origin::Line,
        }
    }
}

/// One `[[routes]]` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Regexes (unanchored; `"*"` matches everything). Exclusive with `prefix`.
    #[serde(rename = "match", default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<Patterns>,
    /// Plain string prefixes. Exclusive with `match`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<Patterns>,
    #[serde(default)]
    pub on: RouteOn,
    /// Names of `[[outputs.*]]` entries.
    #[serde(default)]
    pub outputs: Vec<String>,
    /// Stop at this rule when it matches (carbon-c-relay's `stop`).
    #[serde(default)]
    pub stop: bool,
    /// Discard what matches and stop (carbon-c-relay's `send to blackhole`).
    #[serde(default)]
    pub drop: bool,
}

/// One `[[rewrite]]` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewriteConfig {
    #[serde(rename = "match")]
    pub pattern: String,
    /// The replacement (`into` is accepted too, carbon-c-relay's word).
    #[serde(alias = "into")]
    pub replace: String,
    /// `pre` (default): before aggregation and routing. `post`: after aggregation, on the
    /// inputs that go on to the routes, not on aggregates (carbon's rewrite-rules.conf
    /// `[post]`).
    #[serde(default, skip_serializing_if = "is_default")]
    pub stage: RewriteStage,
    /// Replace every match, not only the first (carbon's rewrite rules are Python's
    /// `re.sub`, which replaces all).
    #[serde(default, skip_serializing_if = "is_default")]
    pub replace_all: bool,
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// When a `[[rewrite]]` applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RewriteStage {
    #[default]
    Pre,
    Post,
}

/// How Graphite names are cleansed on arrival (`[graphite] validation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Validation {
    /// Names as they came, like carbon-relay.
    #[default]
    None,
    /// carbon-c-relay's cleansing: irregular characters become `_`, dots are tidied.
    Cleanse,
    /// The metric-name encoder per segment: reversible, idempotent.
    Encode,
}

/// A routing configuration that cannot work, naming the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("routes[{rule}]: give either `match` or `prefix`, not both")]
    MatchAndPrefix { rule: usize },
    #[error("routes[{rule}]: needs `match` (a regex, or \"*\" for everything) or `prefix`")]
    NoMatch { rule: usize },
    #[error("routes[{rule}]: `{key}` is empty; write match = \"*\" to match everything")]
    EmptyPattern { rule: usize, key: &'static str },
    #[error("routes[{rule}]: invalid regex {pattern:?}: {message}")]
    Regex {
        rule: usize,
        pattern: String,
        message: String,
    },
    #[error("routes[{rule}]: unknown output {output:?} (configured outputs: {known})")]
    UnknownOutput {
        rule: usize,
        output: String,
        known: String,
    },
    #[error("routes[{rule}]: needs `outputs`, or `drop = true` to discard what it matches")]
    NoOutputs { rule: usize },
    #[error("routes[{rule}]: `drop = true` sends nowhere, so `outputs` makes no sense with it")]
    DropWithOutputs { rule: usize },
    #[error("rewrite[{rule}]: invalid regex {pattern:?}: {message}")]
    RewriteRegex {
        rule: usize,
        pattern: String,
        message: String,
    },
    #[error("rewrite[{rule}]: replacement {replace:?}: {message}")]
    Replacement {
        rule: usize,
        replace: String,
        message: String,
    },
    #[error("at most {MAX_OUTPUTS} outputs can be routed to; {count} are configured")]
    TooManyOutputs { count: usize },
    #[error("two outputs are named {name:?}")]
    DuplicateOutput { name: String },
    #[error("allowed_chars {chars:?}: {problem}")]
    AllowedChars {
        chars: String,
        problem: &'static str,
    },
    #[error(
        "validation = \"encode\" needs name_encoding = \"idna\": punycode output cannot be told \
         apart from a plain name, so names encoded upstream would be encoded again"
    )]
    EncodeNeedsIdna,
}

/// A name that cleansing cannot turn into a usable Graphite name; that point is dropped and
/// counted, the stream goes on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("name {name:?} is empty after {stage}")]
    Empty { name: String, stage: &'static str },
    #[error("segment {segment:?} of {name:?} cannot be encoded: {source}")]
    Unencodable {
        name: String,
        segment: String,
        source: Box<metric_name::Error>,
    },
}

impl NameError {
    /// A short, stable label for the `reason` label of rejection counters.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Empty { .. } => "empty_name",
            Self::Unencodable { .. } => "unencodable_name",
        }
    }
}

/// Where a point came from, which decides what routes look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// Graphite plaintext or pickle: the key is the path (tags after `;` are ignored).
    Graphite,
    /// InfluxDB line protocol: the key is the measurement.
    Line,
}

/// The outputs a point goes to (indices into the router's output list), plus why it may go
/// nowhere.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutputSet {
    bits: u64,
    dropped: bool,
    unrouted: bool,
}

impl OutputSet {
    pub const fn new() -> Self {
        Self {
            bits: 0,
            dropped: false,
            unrouted: false,
        }
    }

    pub fn clear(&mut self) {
        *self = Self::new();
    }

    /// Adds output `index` (< [`MAX_OUTPUTS`]).
    pub fn insert(&mut self, index: usize) {
        debug_assert!(index < MAX_OUTPUTS);
        self.bits |= 1 << index;
    }

    pub fn contains(&self, index: usize) -> bool {
        index < MAX_OUTPUTS && self.bits & (1 << index) != 0
    }

    pub fn is_empty(&self) -> bool {
        self.bits == 0
    }

    pub fn len(&self) -> usize {
        self.bits.count_ones() as usize
    }

    /// The output indices, ascending.
    pub fn iter(&self) -> impl Iterator<Item = usize> {
        let mut bits = self.bits;
        std::iter::from_fn(move || {
            (bits != 0).then(|| {
                let i = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                i
            })
        })
    }

    /// A `drop = true` rule matched: routing stopped there. Count the point as dropped when
    /// the set is also empty (otherwise earlier rules still send it somewhere).
    pub fn dropped(&self) -> bool {
        self.dropped
    }

    /// Routes exist and none matched: the point goes nowhere.
    pub fn unrouted(&self) -> bool {
        self.unrouted
    }

    pub fn bits(&self) -> u64 {
        self.bits
    }
}

#[derive(Debug)]
enum Matcher {
    All,
    Prefixes(Vec<String>),
    /// `any` is the alternation of `each`, so a rule with many patterns costs one search;
    /// `each` tells `describe` which pattern it was.
    Regexes {
        any: Regex,
        each: Vec<Regex>,
    },
}

impl Matcher {
    /// The pattern that matched `key`, as configured.
    fn find<'m>(&'m self, key: &str) -> Option<&'m str> {
        match self {
            Self::All => Some("*"),
            Self::Prefixes(p) => p
                .iter()
                .find(|p| key.starts_with(p.as_str()))
                .map(String::as_str),
            Self::Regexes { each, .. } => each.iter().find(|r| r.is_match(key)).map(Regex::as_str),
        }
    }

    #[inline]
    fn is_match(&self, key: &str) -> bool {
        match self {
            Self::All => true,
            Self::Prefixes(p) => p.iter().any(|p| key.starts_with(p.as_str())),
            Self::Regexes { any, .. } => any.is_match(key),
        }
    }
}

#[derive(Debug)]
struct Rule {
    matcher: Matcher,
    on: RouteOn,
    outputs: u64,
    stop: bool,
    drop: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    Keep,
    Lower,
    Upper,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(String),
    Group { index: usize, case: Case },
}

/// A regex and its replacement, carbon-c-relay's `rewrite` (and `aggregate ... write to`).
#[derive(Debug)]
pub(crate) struct Rewrite {
    regex: Regex,
    pieces: Vec<Piece>,
    /// Every match, not only the first.
    all: bool,
}

impl Rewrite {
    /// `replace` checked against `regex` (a reference to a group it lacks is an error).
    pub(crate) fn new(regex: Regex, replace: &str) -> Result<Self, String> {
        let pieces = parse_replacement(replace, &regex)?;
        Ok(Self {
            regex,
            pieces,
            all: false,
        })
    }

    /// Writes `name` with the first match replaced into `out`; false when nothing matched.
    pub(crate) fn rewrite_into(&self, name: &str, out: &mut String) -> bool {
        self.apply(name, out, false)
    }

    /// Rewrites the current name — `scratch` when `in_scratch`, else `name` — into `scratch`.
    /// Returns whether the rule matched (when it did not, nothing was touched).
    fn apply(&self, name: &str, scratch: &mut String, in_scratch: bool) -> bool {
        if self.all {
            return self.apply_all(name, scratch, in_scratch);
        }
        self.apply_first(name, scratch, in_scratch)
    }

    /// Python's `re.sub`: every non-overlapping match replaced (the tags kept).
    fn apply_all(&self, name: &str, scratch: &mut String, in_scratch: bool) -> bool {
        let current: &str = if in_scratch { scratch } else { name };
        let plen = path_len(current);
        let path = &current[..plen];
        if !self.regex.is_match(path) {
            return false;
        }
        let mut out = String::with_capacity(current.len());
        let mut last = 0;
        for caps in self.regex.captures_iter(path) {
            let m = caps.get(0).expect("group 0 always takes part");
            out.push_str(&path[last..m.start()]);
            for piece in &self.pieces {
                match piece {
                    Piece::Literal(text) => out.push_str(text),
                    Piece::Group { index, case } => {
                        if let Some(g) = caps.get(*index) {
                            match case {
                                Case::Keep => out.push_str(g.as_str()),
                                Case::Lower => out.push_str(&g.as_str().to_ascii_lowercase()),
                                Case::Upper => out.push_str(&g.as_str().to_ascii_uppercase()),
                            }
                        }
                    }
                }
            }
            last = m.end();
        }
        out.push_str(&current[last..]);
        *scratch = out;
        true
    }

    fn apply_first(&self, name: &str, scratch: &mut String, in_scratch: bool) -> bool {
        let current: &str = if in_scratch { scratch } else { name };
        let path = &current[..path_len(current)];
        if !self.regex.is_match(path) {
            return false;
        }
        let mut locations = self.regex.capture_locations();
        let Some(m) = self.regex.captures_read(&mut locations, path) else {
            return false;
        };
        let (start, end, total) = (m.start(), m.end(), current.len());
        // Build `before + replacement + after` behind the current name in one buffer, then
        // cut the current name off the front: no second buffer, whichever holds the input.
        let mut bytes = std::mem::take(scratch).into_bytes();
        if !in_scratch {
            bytes.clear();
            bytes.extend_from_slice(name.as_bytes());
        }
        bytes.extend_from_within(..start);
        for piece in &self.pieces {
            match piece {
                Piece::Literal(text) => bytes.extend_from_slice(text.as_bytes()),
                Piece::Group { index, case } => {
                    if let Some((s, e)) = locations.get(*index) {
                        let at = bytes.len();
                        bytes.extend_from_within(s..e);
                        match case {
                            Case::Keep => {}
                            Case::Lower => bytes[at..].make_ascii_lowercase(),
                            Case::Upper => bytes[at..].make_ascii_uppercase(),
                        }
                    }
                }
            }
        }
        bytes.extend_from_within(end..total);
        bytes.drain(..total);
        // Every piece is whole UTF-8 (match bounds are character bounds, case changes are
        // ASCII-only), so the lossy branch is never taken.
        *scratch = String::from_utf8(bytes)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
        true
    }
}

/// Parses a replacement into literal text and group references, checked against `regex`.
fn parse_replacement(replace: &str, regex: &Regex) -> Result<Vec<Piece>, String> {
    let groups = regex.captures_len();
    let mut pieces = Vec::new();
    let mut literal = String::new();
    let mut chars = replace.chars().peekable();
    let mut group = |literal: &mut String, index: usize, case: Case| {
        if index >= groups {
            return Err(format!(
                "refers to group {index}, but the regex has {} group{}",
                groups - 1,
                if groups == 2 { "" } else { "s" }
            ));
        }
        if !literal.is_empty() {
            pieces.push(Piece::Literal(std::mem::take(literal)));
        }
        pieces.push(Piece::Group { index, case });
        Ok(())
    };
    let digits = |first: char, chars: &mut std::iter::Peekable<std::str::Chars<'_>>| {
        let mut n = first.to_digit(10).map_or(0, |d| d as usize);
        while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
            n = n.saturating_mul(10).saturating_add(d as usize);
            chars.next();
        }
        n
    };
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                None => return Err("ends with a lone `\\`".to_owned()),
                Some(d @ '0'..='9') => {
                    let n = digits(d, &mut chars);
                    group(&mut literal, n, Case::Keep)?;
                }
                Some(m @ ('_' | '^')) => {
                    let case = if m == '_' { Case::Lower } else { Case::Upper };
                    match chars.next() {
                        Some(d @ '0'..='9') => {
                            let n = digits(d, &mut chars);
                            group(&mut literal, n, case)?;
                        }
                        _ => {
                            return Err(format!(
                                "`\\{m}` must be followed by a group number, as in `\\{m}1`"
                            ))
                        }
                    }
                }
                // Python's `\g<name>` / `\g<1>` (carbon's rewrite rules).
                Some('g') if chars.peek() == Some(&'<') => {
                    chars.next();
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some('>') => break,
                            Some(c) => name.push(c),
                            None => return Err("`\\g<` is not closed by `>`".to_owned()),
                        }
                    }
                    let index = if !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit()) {
                        name.parse().unwrap_or(usize::MAX)
                    } else {
                        regex
                            .capture_names()
                            .position(|n| n == Some(name.as_str()))
                            .ok_or_else(|| format!("the regex has no group named {name:?}"))?
                    };
                    group(&mut literal, index, Case::Keep)?;
                }
                // `\\` is a backslash; `\.` and the like are the character itself.
                Some(other) => literal.push(other),
            },
            '$' => match chars.next() {
                Some('$') => literal.push('$'),
                Some(d @ '0'..='9') => {
                    let n = digits(d, &mut chars);
                    group(&mut literal, n, Case::Keep)?;
                }
                Some('{') => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(c) => name.push(c),
                            None => return Err("`${` is not closed by `}`".to_owned()),
                        }
                    }
                    let index = if !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit()) {
                        name.parse().unwrap_or(usize::MAX)
                    } else {
                        regex
                            .capture_names()
                            .position(|n| n == Some(name.as_str()))
                            .ok_or_else(|| format!("the regex has no group named {name:?}"))?
                    };
                    group(&mut literal, index, Case::Keep)?;
                }
                _ => return Err(
                    "`$` must be followed by a group number, `{name}`, or `$` for a literal `$`"
                        .to_owned(),
                ),
            },
            c => literal.push(c),
        }
    }
    if !literal.is_empty() {
        pieces.push(Piece::Literal(literal));
    }
    Ok(pieces)
}

/// Length of the path part of a Graphite name (before the first `;`).
#[inline]
fn path_len(name: &str) -> usize {
    memchr::memchr(b';', name.as_bytes()).unwrap_or(name.len())
}

/// Longest segment the encoder passes through unchanged (a DNS label).
const MAX_SAFE_SEGMENT: usize = 63;

/// True when `path` needs no work: non-empty, no empty segment (so no leading, trailing or
/// doubled dot), every other byte in `keep`, no segment longer than `max_segment`. One pass,
/// no splitting: this is what every already-clean name costs.
#[inline]
fn is_tidy(path: &[u8], keep: &[bool; 256], max_segment: usize) -> bool {
    let mut ok = true;
    let mut run = 0usize;
    for &b in path {
        if b == b'.' {
            ok &= run != 0;
            run = 0;
        } else {
            ok &= keep[b as usize];
            run += 1;
        }
        ok &= run <= max_segment;
    }
    ok & (run != 0)
}

/// A test for plain paths that cleansing leaves unchanged ([`Cleanser::plain_names`]).
#[derive(Clone, Debug)]
pub struct PlainNames {
    keep: [bool; 256],
    max_segment: usize,
    /// `validation = "none"`: any non-empty path of printable ASCII but `;` stays as it is,
    /// dots and all.
    any_graphic: bool,
}

impl PlainNames {
    /// True when cleansing leaves `path` as it is: non-empty, and either (`none`) printable
    /// ASCII without `;`, or without empty segments and with every other byte kept.
    #[inline]
    pub fn keeps(&self, path: &[u8]) -> bool {
        if self.any_graphic {
            !path.is_empty() && path.iter().all(|&b| printable_not_semicolon(b))
        } else {
            is_tidy(path, &self.keep, self.max_segment)
        }
    }

    /// `validation = "none"`'s test: any non-empty printable ASCII path without `;`.
    #[inline]
    pub fn any_graphic(&self) -> bool {
        self.any_graphic
    }

    /// Where the path at the start of `line` ends (its first space), when that path is one
    /// [`PlainNames::keeps`]; `None` otherwise or when `line` has no space.
    #[inline]
    pub fn path_end(&self, line: &[u8]) -> Option<usize> {
        if !self.any_graphic {
            let end = memchr::memchr(b' ', line)?;
            return self.keeps(&line[..end]).then_some(end);
        }
        // Eight bytes at a time: the first space, and no odd byte before it.
        let mut n = 0;
        while let Some(word) = line.get(n..n + 8) {
            let x = u64::from_le_bytes(word.try_into().expect("8 bytes"));
            let (space, odd) = swar::space_and_odd(x);
            if space != 0 {
                let at = (space.trailing_zeros() / 8) as usize;
                let before = (1u64 << (at * 8)) - 1;
                return (odd & before == 0 && n + at > 0).then_some(n + at);
            }
            if odd != 0 {
                return None;
            }
            n += 8;
        }
        let end = n + memchr::memchr(b' ', &line[n..])?;
        let tail_kept = line[n..end].iter().all(|&b| printable_not_semicolon(b));
        (end > 0 && tail_kept).then_some(end)
    }
}

/// A byte `validation = "none"` passes on as it is in a plain path (what
/// [`swar::space_and_odd`] tells apart eight at a time).
#[inline(always)]
fn printable_not_semicolon(b: u8) -> bool {
    b.is_ascii_graphic() && b != b';'
}

/// Byte-parallel tests on eight bytes at a time (a `u64` read little-endian). Each returns a
/// word with the high bit of every byte that matches set, and no other bit: exact per byte,
/// the arithmetic never carries from one byte into the next.
pub(crate) mod swar {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const HIGH: u64 = 0x8080_8080_8080_8080;

    /// The bytes that are not zero.
    #[inline(always)]
    fn nonzero(x: u64) -> u64 {
        (((x & LOW7) + LOW7) | x) & HIGH
    }

    /// The bytes equal to `b`.
    #[inline(always)]
    fn equal(x: u64, b: u8) -> u64 {
        !nonzero(x ^ (ONES * u64::from(b))) & HIGH
    }

    /// The spaces, and the bytes that are neither printable ASCII (`!` to `~`) nor a space,
    /// or are `;`.
    #[inline(always)]
    pub(crate) fn space_and_odd(x: u64) -> (u64, u64) {
        let space = equal(x, b' ');
        // Printable or space: 0x20..=0x7e.
        let high = x & HIGH;
        let low = x & LOW7;
        // low >= 0x20: adding 0x60 sets the high bit (at most 0xdf: no carry out).
        let at_least_space = (low + ONES * 0x60) & HIGH;
        let is_del = equal(x, 0x7f);
        let printable_or_space = at_least_space & !high & !is_del;
        let odd = ((!printable_or_space & HIGH) | equal(x, b';')) & !space;
        (space, odd)
    }
}

/// Cleanses Graphite names as configured by `validation`.
#[derive(Clone)]
pub struct Cleanser {
    validation: Validation,
    /// `cleanse`: bytes kept as they are (dots apart).
    allowed: [bool; 256],
    /// `encode`: bytes the encoder leaves alone (dots apart).
    safe: [bool; 256],
    encoder: SegmentEncoder,
}

impl fmt::Debug for Cleanser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let extra: String = (0u8..=127)
            .filter(|&b| self.allowed[b as usize] && !b.is_ascii_alphanumeric())
            .map(char::from)
            .collect();
        f.debug_struct("Cleanser")
            .field("validation", &self.validation)
            .field("allowed_chars", &extra)
            .field("encoder", &self.encoder)
            .finish()
    }
}

impl Default for Cleanser {
    fn default() -> Self {
        Self::new(
            Validation::None,
            DEFAULT_ALLOWED_CHARS,
            SegmentEncoder::new(metric_name::Encoding::Idna, true),
        )
        .expect("the defaults are valid")
    }
}

impl Cleanser {
    /// `allowed_chars` only matters for `cleanse`, `encoder` only for `encode`.
    pub fn new(
        validation: Validation,
        allowed_chars: &str,
        encoder: SegmentEncoder,
    ) -> Result<Self, RouteError> {
        let bad = |problem| RouteError::AllowedChars {
            chars: allowed_chars.to_owned(),
            problem,
        };
        let mut allowed = [false; 256];
        for b in (b'a'..=b'z').chain(b'A'..=b'Z').chain(b'0'..=b'9') {
            allowed[b as usize] = true;
        }
        for b in allowed_chars.bytes() {
            if !b.is_ascii_graphic() {
                return Err(bad(
                    "only printable ASCII characters other than space can be allowed",
                ));
            }
            if matches!(b, b'.' | b';') {
                return Err(bad("`.` and `;` structure the name and cannot be listed"));
            }
            allowed[b as usize] = true;
        }
        if validation == Validation::Encode && encoder.encoding != metric_name::Encoding::Idna {
            return Err(RouteError::EncodeNeedsIdna);
        }
        // Derived from the encoder itself so the fast path can never disagree with it.
        let mut safe = [false; 256];
        for b in 0..128u8 {
            let mut one = [0u8; 4];
            safe[b as usize] = b != b'.' && encoder.is_safe(char::from(b).encode_utf8(&mut one));
        }
        Ok(Self {
            validation,
            allowed,
            safe,
            encoder,
        })
    }

    /// Which plain Graphite paths this cleanser leaves exactly as they are: what lets a relay
    /// pass such a line on as the bytes it came as. Tagged names (`;`) and bytes outside
    /// printable ASCII are never among them (they are checked on the way that parses).
    pub fn plain_names(&self) -> PlainNames {
        let (table, max_segment) = match self.validation {
            Validation::None => ([true; 256], usize::MAX),
            Validation::Cleanse => (self.allowed, usize::MAX),
            Validation::Encode => (self.safe, MAX_SAFE_SEGMENT),
        };
        let mut keep = [false; 256];
        for b in 0..=255u8 {
            keep[b as usize] = table[b as usize] && b.is_ascii_graphic() && b != b';' && b != b'.';
        }
        PlainNames {
            keep,
            max_segment,
            any_graphic: self.validation == Validation::None,
        }
    }

    pub fn validation(&self) -> Validation {
        self.validation
    }

    /// The cleansed name: `name` itself when nothing changes, else built in `scratch`.
    pub fn cleanse<'a>(
        &self,
        name: &'a str,
        scratch: &'a mut String,
    ) -> Result<&'a str, NameError> {
        match self.validation {
            Validation::None => Ok(name),
            Validation::Cleanse => self.replace_irregular(name, scratch),
            Validation::Encode => self.encode_segments(name, scratch),
        }
    }

    fn replace_irregular<'a>(
        &self,
        name: &'a str,
        scratch: &'a mut String,
    ) -> Result<&'a str, NameError> {
        let (path, tags) = name.split_at(path_len(name));
        let bytes = path.as_bytes();
        if is_tidy(bytes, &self.allowed, usize::MAX) {
            return Ok(name);
        }
        scratch.clear();
        for &b in bytes {
            if b == b'.' {
                if !scratch.is_empty() && !scratch.ends_with('.') {
                    scratch.push('.');
                }
            } else if self.allowed[b as usize] {
                scratch.push(char::from(b));
            } else {
                scratch.push('_');
            }
        }
        while scratch.ends_with('.') {
            scratch.pop();
        }
        if scratch.is_empty() {
            return Err(NameError::Empty {
                name: name.to_owned(),
                stage: "cleansing",
            });
        }
        scratch.push_str(tags);
        Ok(scratch)
    }

    fn encode_segments<'a>(
        &self,
        name: &'a str,
        scratch: &'a mut String,
    ) -> Result<&'a str, NameError> {
        let (path, tags) = name.split_at(path_len(name));
        if is_tidy(path.as_bytes(), &self.safe, MAX_SAFE_SEGMENT) {
            return Ok(name);
        }
        scratch.clear();
        for segment in path.split('.').filter(|s| !s.is_empty()) {
            if !scratch.is_empty() {
                scratch.push('.');
            }
            if self.encoder.is_encoded(segment) {
                scratch.push_str(segment);
            } else {
                self.encoder
                    .encode_into(segment, scratch)
                    .map_err(|source| NameError::Unencodable {
                        name: name.to_owned(),
                        segment: segment.to_owned(),
                        source: Box::new(source),
                    })?;
            }
        }
        if scratch.is_empty() {
            return Err(NameError::Empty {
                name: name.to_owned(),
                stage: "cleansing",
            });
        }
        scratch.push_str(tags);
        Ok(scratch)
    }
}

/// Working space for [`Router::normalize`]: cleansing and rewriting each need a buffer.
#[derive(Debug, Default)]
pub struct NameScratch {
    cleansed: String,
    rewritten: String,
}

/// One rewrite that applied, for `fluxgate dry-run`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RewriteStep {
    /// Index into `[[rewrite]]`.
    pub rule: usize,
    pub pattern: String,
    pub before: String,
    pub after: String,
}

/// One route rule that matched, for `fluxgate dry-run`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RouteStep {
    /// Index into `[[routes]]`.
    pub rule: usize,
    /// The pattern that matched (`"*"`, a regex, or a prefix).
    pub pattern: String,
    /// Whether `pattern` is a plain prefix rather than a regex.
    pub prefix: bool,
    pub outputs: Vec<String>,
    pub stop: bool,
    pub drop: bool,
}

/// Where a point goes, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// No routes are configured: every output.
    Default,
    /// Rules matched and chose the outputs.
    Routed,
    /// A `drop = true` rule matched (outputs chosen before it still get the point).
    Dropped,
    /// Routes exist and none matched.
    Unrouted,
}

/// The explanation of one routing decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RouteDescription {
    pub key: String,
    pub origin: Origin,
    pub steps: Vec<RouteStep>,
    pub outputs: Vec<String>,
    pub verdict: Verdict,
}

impl fmt::Display for RouteDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for step in &self.steps {
            let kind = if step.prefix { "prefix" } else { "match" };
            write!(f, "routes[{}] {kind} {:?} -> ", step.rule, step.pattern)?;
            if step.drop {
                f.write_str("drop")?;
            } else {
                f.write_str(&step.outputs.join(", "))?;
                if step.stop {
                    f.write_str(" (stop)")?;
                }
            }
            f.write_str("\n")?;
        }
        match self.verdict {
            Verdict::Default => write!(
                f,
                "no routes: to every output ({})",
                self.outputs.join(", ")
            ),
            Verdict::Unrouted => f.write_str("unrouted: no route matched"),
            Verdict::Dropped if self.outputs.is_empty() => f.write_str("dropped"),
            Verdict::Dropped | Verdict::Routed => write!(f, "to {}", self.outputs.join(", ")),
        }
    }
}

/// Compiled cleansing, rewrites and routes.
#[derive(Debug)]
pub struct Router {
    cleanser: Cleanser,
    rewrites: Vec<Rewrite>,
    /// `stage = "post"`: after aggregation.
    post_rewrites: Vec<Rewrite>,
    rules: Vec<Rule>,
    outputs: Vec<String>,
    all: u64,
    /// The cleanser's [`Cleanser::plain_names`], made once: a relay asks for it every read.
    plain: PlainNames,
}

impl Router {
    /// `outputs` are the configured output names; [`OutputSet`] indices refer to this order.
    pub fn new<S: AsRef<str>>(
        routes: &[RouteConfig],
        rewrites: &[RewriteConfig],
        cleanser: Cleanser,
        outputs: &[S],
    ) -> Result<Self, RouteError> {
        let outputs: Vec<String> = outputs.iter().map(|o| o.as_ref().to_owned()).collect();
        if outputs.len() > MAX_OUTPUTS {
            return Err(RouteError::TooManyOutputs {
                count: outputs.len(),
            });
        }
        for (i, name) in outputs.iter().enumerate() {
            if outputs[..i].contains(name) {
                return Err(RouteError::DuplicateOutput { name: name.clone() });
            }
        }
        let rewrites = rewrites
            .iter()
            .enumerate()
            .map(|(rule, r)| {
                let regex = Regex::new(&r.pattern).map_err(|e| RouteError::RewriteRegex {
                    rule,
                    pattern: r.pattern.clone(),
                    message: e.to_string(),
                })?;
                let pieces = parse_replacement(&r.replace, &regex).map_err(|message| {
                    RouteError::Replacement {
                        rule,
                        replace: r.replace.clone(),
                        message,
                    }
                })?;
                Ok((
                    r.stage,
                    Rewrite {
                        regex,
                        pieces,
                        all: r.replace_all,
                    },
                ))
            })
            .collect::<Result<Vec<_>, RouteError>>()?;
        let (pre, post): (Vec<_>, Vec<_>) = rewrites
            .into_iter()
            .partition(|(stage, _)| *stage == RewriteStage::Pre);
        let rewrites = pre.into_iter().map(|(_, r)| r).collect();
        let post_rewrites = post.into_iter().map(|(_, r)| r).collect();
        let rules = routes
            .iter()
            .enumerate()
            .map(|(rule, r)| Self::compile_rule(rule, r, &outputs))
            .collect::<Result<Vec<_>, RouteError>>()?;
        let all = if outputs.len() == MAX_OUTPUTS {
            u64::MAX
        } else {
            (1u64 << outputs.len()) - 1
        };
        Ok(Self {
            plain: cleanser.plain_names(),
            cleanser,
            rewrites,
            post_rewrites,
            rules,
            outputs,
            all,
        })
    }

    fn compile_rule(rule: usize, r: &RouteConfig, outputs: &[String]) -> Result<Rule, RouteError> {
        let matcher = match (&r.pattern, &r.prefix) {
            (Some(_), Some(_)) => return Err(RouteError::MatchAndPrefix { rule }),
            (None, None) => return Err(RouteError::NoMatch { rule }),
            (Some(patterns), None) => {
                let patterns = patterns.as_slice();
                if patterns.is_empty() || patterns.iter().any(String::is_empty) {
                    return Err(RouteError::EmptyPattern { rule, key: "match" });
                }
                if patterns.iter().any(|p| p == "*") {
                    Matcher::All
                } else {
                    let each = patterns
                        .iter()
                        .map(|p| {
                            Regex::new(p).map_err(|e| RouteError::Regex {
                                rule,
                                pattern: p.clone(),
                                message: e.to_string(),
                            })
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    let any = if let [one] = &each[..] {
                        one.clone()
                    } else {
                        let joined: Vec<String> =
                            patterns.iter().map(|p| format!("(?:{p})")).collect();
                        Regex::new(&joined.join("|")).map_err(|e| RouteError::Regex {
                            rule,
                            pattern: joined.join("|"),
                            message: e.to_string(),
                        })?
                    };
                    Matcher::Regexes { any, each }
                }
            }
            (None, Some(prefixes)) => {
                let prefixes = prefixes.as_slice();
                if prefixes.is_empty() || prefixes.iter().any(String::is_empty) {
                    return Err(RouteError::EmptyPattern {
                        rule,
                        key: "prefix",
                    });
                }
                Matcher::Prefixes(prefixes.to_vec())
            }
        };
        if r.drop && !r.outputs.is_empty() {
            return Err(RouteError::DropWithOutputs { rule });
        }
        if !r.drop && r.outputs.is_empty() {
            return Err(RouteError::NoOutputs { rule });
        }
        let mut bits = 0u64;
        for name in &r.outputs {
            let index = outputs.iter().position(|o| o == name).ok_or_else(|| {
                RouteError::UnknownOutput {
                    rule,
                    output: name.clone(),
                    known: if outputs.is_empty() {
                        "none".to_owned()
                    } else {
                        outputs.join(", ")
                    },
                }
            })?;
            bits |= 1 << index;
        }
        Ok(Rule {
            matcher,
            on: r.on,
            outputs: bits,
            stop: r.stop,
            drop: r.drop,
        })
    }

    /// The output names, in [`OutputSet`] index order.
    pub fn outputs(&self) -> &[String] {
        &self.outputs
    }

    /// Whether any `[[routes]]` are configured (without them everything goes everywhere).
    pub fn has_routes(&self) -> bool {
        !self.rules.is_empty()
    }

    pub fn cleanser(&self) -> &Cleanser {
        &self.cleanser
    }

    /// [`Cleanser::cleanse`] with this router's cleanser.
    pub fn cleanse<'a>(
        &self,
        name: &'a str,
        scratch: &'a mut String,
    ) -> Result<&'a str, NameError> {
        self.cleanser.cleanse(name, scratch)
    }

    /// Applies the `[[rewrite]]` rules in order. Returns `name` itself (no allocation) when no
    /// rule matches, otherwise the result, built in `scratch`.
    pub fn rewrite<'a>(&self, name: &'a str, scratch: &'a mut String) -> &'a str {
        let mut in_scratch = false;
        for rewrite in &self.rewrites {
            in_scratch |= rewrite.apply(name, scratch, in_scratch);
        }
        if in_scratch {
            scratch
        } else {
            name
        }
    }

    /// The `stage = "post"` rewrites, after aggregation: `name` itself when none applies.
    pub fn rewrite_post<'a>(&self, name: &'a str, scratch: &'a mut String) -> &'a str {
        let mut in_scratch = false;
        for rewrite in &self.post_rewrites {
            in_scratch |= rewrite.apply(name, scratch, in_scratch);
        }
        if in_scratch {
            scratch
        } else {
            name
        }
    }

    /// When no rewrite and no route rule is configured, every Graphite point goes to every
    /// output under the name it came with if cleansing keeps it: which names those are.
    pub fn identity(&self) -> Option<&PlainNames> {
        (self.rewrites.is_empty() && self.post_rewrites.is_empty() && self.rules.is_empty())
            .then_some(&self.plain)
    }

    /// The outputs a point goes to when no route rule is configured: all of them.
    pub fn all_outputs(&self) -> u64 {
        self.all
    }

    /// Whether any `stage = "post"` rewrite is configured.
    pub fn has_post_rewrites(&self) -> bool {
        !self.post_rewrites.is_empty()
    }

    /// Cleansing then rewriting, as a Graphite name arrives. A name that rewriting empties
    /// is an error like one that cleansing empties.
    pub fn normalize<'a>(
        &self,
        name: &'a str,
        scratch: &'a mut NameScratch,
    ) -> Result<&'a str, NameError> {
        let cleansed = self.cleanser.cleanse(name, &mut scratch.cleansed)?;
        let rewritten = self.rewrite(cleansed, &mut scratch.rewritten);
        if path_len(rewritten) == 0 {
            return Err(NameError::Empty {
                name: name.to_owned(),
                stage: "rewriting",
            });
        }
        Ok(rewritten)
    }

    /// Chooses the outputs for a point whose key (path or measurement, see [`Origin`]) is
    /// `key`. `out` is cleared first.
    pub fn route(&self, key: &str, origin: Origin, out: &mut OutputSet) {
        out.clear();
        if self.rules.is_empty() {
            out.bits = self.all;
            return;
        }
        let key = match origin {
            Origin::Graphite => &key[..path_len(key)],
            Origin::Line => key,
        };
        let mut matched = false;
        for rule in &self.rules {
            if !rule.on.applies(origin) || !rule.matcher.is_match(key) {
                continue;
            }
            matched = true;
            if rule.drop {
                out.dropped = true;
                return;
            }
            out.bits |= rule.outputs;
            if rule.stop {
                return;
            }
        }
        out.unrouted = !matched;
    }

    /// [`Router::route`], explained rule by rule.
    pub fn describe(&self, key: &str, origin: Origin) -> RouteDescription {
        let mut set = OutputSet::new();
        self.route(key, origin, &mut set);
        let names = |bits: u64| -> Vec<String> {
            (0..self.outputs.len())
                .filter(|i| bits & (1 << i) != 0)
                .map(|i| self.outputs[i].clone())
                .collect()
        };
        let match_key = match origin {
            Origin::Graphite => &key[..path_len(key)],
            Origin::Line => key,
        };
        let mut steps = Vec::new();
        for (index, rule) in self.rules.iter().enumerate() {
            if !rule.on.applies(origin) {
                continue;
            }
            let Some(pattern) = rule.matcher.find(match_key) else {
                continue;
            };
            steps.push(RouteStep {
                rule: index,
                pattern: pattern.to_owned(),
                prefix: matches!(rule.matcher, Matcher::Prefixes(_)),
                outputs: names(rule.outputs),
                stop: rule.stop,
                drop: rule.drop,
            });
            if rule.drop || rule.stop {
                break;
            }
        }
        let verdict = if self.rules.is_empty() {
            Verdict::Default
        } else if set.dropped() {
            Verdict::Dropped
        } else if set.unrouted() {
            Verdict::Unrouted
        } else {
            Verdict::Routed
        };
        RouteDescription {
            key: key.to_owned(),
            origin,
            steps,
            outputs: names(set.bits),
            verdict,
        }
    }

    /// The rewrites [`Router::rewrite`] would apply to `name`, one step per matching rule.
    pub fn describe_rewrites(&self, name: &str) -> Vec<RewriteStep> {
        let mut steps = Vec::new();
        let mut current = name.to_owned();
        let mut scratch = String::new();
        for (rule, rewrite) in self.rewrites.iter().enumerate() {
            if rewrite.apply(&current, &mut scratch, false) {
                steps.push(RewriteStep {
                    rule,
                    pattern: rewrite.regex.as_str().to_owned(),
                    before: std::mem::replace(&mut current, scratch.clone()),
                    after: scratch.clone(),
                });
            }
        }
        steps
    }
}
