//! InfluxDB points → Graphite plaintext, with the conventions of Telegraf's graphite serializer
//! (`plugins/serializers/graphite`).
//!
//! People who move a Telegraf → carbon pipeline behind the gateway already have templates and
//! dashboards built on the paths Telegraf produced, so the path *shape* follows Telegraf:
//!
//! - A template is a dot-separated list of elements: `measurement`, `field`, `tags` (every tag
//!   the template does not name, sorted by key, values only) and any other word, which names a
//!   tag whose value goes there (segment left out when the point has no such tag). So `host` in
//!   the default template `host.tags.measurement.field` is simply the `host` tag, taken out of
//!   `tags`. There are no literal words: constant segments go in `prefix`.
//! - One line per numeric field. A field called `value` stays out of the path (`cpu`, not
//!   `cpu.value`). A template without `field` gives every field the same path, as Telegraf does.
//! - `templates` holds Telegraf's per-measurement overrides: `"filter template"` pairs, first
//!   matching filter wins (`*` and `?` wildcards); an entry without a filter replaces `template`.
//! - `tag_support = true` writes Graphite tagged series instead:
//!   `[prefix<sep>]measurement[<sep>field];k=v;...`, tags sorted by key, the reserved key `name`
//!   renamed `_name`, templates ignored (Telegraf's `graphite_tag_support`).
//! - Booleans are written as 1 and 0 (`bool_mode = "skip"` drops them instead); integers and
//!   unsigned integers as exact decimal integers; floats as the shortest exponent-free decimal
//!   that reads back to the same value (Go's `FormatFloat(v, 'f', -1, 64)`); strings are
//!   skipped. Timestamps are whole seconds, rounded down.
//!
//! Where fluxgate deliberately differs, it is because Telegraf loses information:
//!
//! - Telegraf replaces `.` in tag values by `_` and anything outside a small character set by
//!   `_` (or `-`), so `a.b` and `a_b` become one series and nothing can be decoded. Here EVERY
//!   segment taken from the point (measurement, tag value, field key, and in tag mode tag keys
//!   and values) goes through the metric-name encoder (aiographite's GraphiteEncoder): `web 01`
//!   becomes `web%2001`, `1.2.3.4` becomes `1%2E2%2E3%2E4`, `café` becomes `xn--caf-dma`, and
//!   `metric_name::decode` gives the original back. A segment the encoder refuses (an empty or
//!   64-byte-plus label, a prohibited code point) is an error for the fields that need it;
//!   they are counted and the rest of the point still goes out.
//! - `/` is kept by the GraphiteEncoder, but carbon turns it into a directory separator (a
//!   `path=/var/lib` tag would land in `…/var/lib/…` and collide with other series), so by
//!   default it is written `%2F`, which the same decoder turns back into `/`. `encode_slash =
//!   false` keeps the encoder's bytes exactly.
//! - An empty `tags` element (no remaining tags) leaves no empty segment behind: Telegraf writes
//!   `.mem.free` or `host..cpu`, which carbon-c-relay would collapse anyway.
//! - When a field key repeats within a line, only the last value is written: that is the value
//!   InfluxDB would store (the earlier ones are counted as `duplicate_field`).
//!
//! The hot path ([`GraphiteWriter::write_point`]) appends straight into the caller's buffer;
//! segments that are already safe are copied without being transformed, and the writer's
//! scratch buffers are reused, so the common point costs no heap allocation.

use std::borrow::Cow;
use std::fmt;

use line_protocol::{EscapedStr, FieldValue, ParsedLine};
use metric_name::Encoding;
use serde::{Deserialize, Serialize};

mod telegraf;
#[cfg(test)]
mod tests;

pub use telegraf::{Sanitize, TagSanitizeMode, DEFAULT_STRICT_REGEX};

/// Telegraf's default template.
pub const DEFAULT_TEMPLATE: &str = "host.tags.measurement.field";

/// Lines with up to this many fields are checked pairwise for repeated keys.
const PAIRWISE_FIELDS: usize = 16;

/// The field Telegraf leaves out of the path.
const VALUE_FIELD: &str = "value";

/// Graphite reserves the tag key `name` for the series name; Telegraf renames the InfluxDB tag.
const RESERVED_TAG: &str = "name";
const RENAMED_TAG: &str = "_name";

/// What to do with boolean fields, which Graphite has no type for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BoolMode {
    /// `true` → 1, `false` → 0, as Telegraf does.
    #[default]
    Number,
    /// Leave booleans out (counted as skipped `boolean`).
    Skip,
}

/// The InfluxDB → Graphite settings (Telegraf's graphite serializer options under fluxgate
/// names: `template`, `templates`, `prefix`, `tag_support` = `graphite_tag_support`,
/// `separator` = `graphite_separator`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InfluxToGraphiteConfig {
    /// The path template: `measurement`, `field`, `tags` and tag keys, dot-separated.
    pub template: String,
    /// Per-measurement templates, `"filter template"` (first match wins); an entry without a
    /// filter replaces `template`.
    pub templates: Vec<String>,
    /// Dot-separated constant segments in front of every path, already Graphite-safe.
    pub prefix: String,
    /// Write Graphite tagged series (`measurement.field;k=v`) instead of template paths.
    pub tag_support: bool,
    /// Joins prefix, measurement and field in tag mode.
    pub separator: String,
    /// `"number"` (1/0) or `"skip"`.
    pub bool_mode: BoolMode,
    /// The GraphiteEncoder variant: `"idna"` or `"punycode"`.
    pub name_encoding: Encoding,
    /// Write `/` inside a segment as `%2F` so carbon cannot read it as a directory.
    pub encode_slash: bool,
    /// `encode` (the metric-name encoder, lossless) or `telegraf` (the character replacement
    /// of Telegraf's graphite serializer, so series keep the paths Telegraf gave them).
    pub sanitize: Sanitize,
    /// With `sanitize = "telegraf"` and `tag_support`: Telegraf's
    /// `graphite_tag_sanitize_mode`, `strict` or `compatible`.
    pub tag_sanitize_mode: TagSanitizeMode,
    /// With `sanitize = "telegraf"`: Telegraf's `graphite_strict_sanitize_regex`, the
    /// characters that become `_` (empty: Telegraf's default).
    pub strict_sanitize_regex: String,
}

impl Default for InfluxToGraphiteConfig {
    fn default() -> Self {
        Self {
            template: DEFAULT_TEMPLATE.to_owned(),
            templates: Vec::new(),
            prefix: String::new(),
            tag_support: false,
            separator: ".".to_owned(),
            bool_mode: BoolMode::Number,
            name_encoding: Encoding::Idna,
            encode_slash: true,
            sanitize: Sanitize::Encode,
            tag_sanitize_mode: TagSanitizeMode::Strict,
            strict_sanitize_regex: String::new(),
        }
    }
}

/// Which configuration entry holds a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateLocation {
    /// The `template` key.
    Default,
    /// `templates[i]`.
    Entry(usize),
}

impl fmt::Display for TemplateLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Default => f.write_str("template"),
            Self::Entry(i) => write!(f, "templates[{i}]"),
        }
    }
}

/// A configuration the InfluxDB → Graphite translation refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InfluxTemplateError {
    #[error("{location}: template {template:?} has an empty element at position {position} (two dots in a row, or a dot at an end)")]
    EmptyElement {
        location: TemplateLocation,
        template: String,
        /// 1-based.
        position: usize,
    },
    #[error("{location}: template {template:?} uses `{element}` more than once")]
    Repeated {
        location: TemplateLocation,
        template: String,
        element: String,
    },
    #[error("{location}: expected `template` or `filter template`, found {line:?}")]
    InvalidFormat {
        location: TemplateLocation,
        line: String,
    },
    #[error("{location}: filter {filter:?} uses `{syntax}`; only the `*` and `?` wildcards are supported")]
    UnsupportedFilter {
        location: TemplateLocation,
        filter: String,
        syntax: char,
    },
    #[error("{location}: a second template without a filter; {first} already replaces the default template")]
    DuplicateDefault {
        location: TemplateLocation,
        first: TemplateLocation,
    },
    #[error("prefix {prefix:?}: segment {segment:?} {problem}")]
    Prefix {
        prefix: String,
        segment: String,
        problem: String,
    },
    #[error("separator {separator:?}: {problem}")]
    Separator {
        separator: String,
        problem: &'static str,
    },
    #[error("{0}")]
    StrictRegex(String),
}

/// Why a field produced no line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SkipReason {
    /// A string field: Graphite stores numbers only (Telegraf skips them too).
    String,
    /// A boolean field with `bool_mode = "skip"`.
    Boolean,
    /// NaN or ±Inf (impossible from parsed line protocol; possible in points built by hand).
    NonFinite,
    /// A segment of its path cannot be encoded.
    Unencodable,
    /// The template produced no segment at all for this point.
    EmptyPath,
    /// A later field in the same line has the same key and wins, as in InfluxDB.
    DuplicateField,
}

impl SkipReason {
    /// Every reason, in [`Skipped`]'s order.
    pub const ALL: [SkipReason; 6] = [
        SkipReason::String,
        SkipReason::Boolean,
        SkipReason::NonFinite,
        SkipReason::Unencodable,
        SkipReason::EmptyPath,
        SkipReason::DuplicateField,
    ];

    /// A short, stable label for metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Boolean => "boolean",
            Self::NonFinite => "non_finite",
            Self::Unencodable => "unencodable",
            Self::EmptyPath => "empty_path",
            Self::DuplicateField => "duplicate_field",
        }
    }

    /// Whether this is a problem worth a log line, rather than the configured policy at work
    /// (strings, skipped booleans, superseded duplicates).
    pub const fn is_error(self) -> bool {
        matches!(self, Self::NonFinite | Self::Unencodable | Self::EmptyPath)
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Skipped fields of one or more points, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Skipped {
    counts: [u32; SkipReason::ALL.len()],
}

impl Skipped {
    /// How many fields were skipped for `reason`.
    pub fn get(&self, reason: SkipReason) -> u32 {
        self.counts[reason as usize]
    }

    /// All skipped fields.
    pub fn total(&self) -> u32 {
        self.counts.iter().sum()
    }

    /// The reasons with a non-zero count.
    pub fn iter(&self) -> impl Iterator<Item = (SkipReason, u32)> + '_ {
        SkipReason::ALL
            .into_iter()
            .map(|r| (r, self.get(r)))
            .filter(|&(_, n)| n > 0)
    }

    /// Adds another tally (for totals over a batch).
    pub fn add(&mut self, other: &Skipped) {
        for (a, b) in self.counts.iter_mut().zip(other.counts) {
            *a += b;
        }
    }

    fn bump(&mut self, reason: SkipReason) {
        self.counts[reason as usize] += 1;
    }
}

/// The first real problem met in a point, for a (rate-limited) log line.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FieldError {
    #[error("{element} {text:?} of measurement {measurement:?} cannot be made a Graphite name: {source}")]
    Unencodable {
        measurement: String,
        /// `measurement`, `field key`, `value of tag "host"`, `tag key`.
        element: String,
        text: String,
        source: metric_name::Error,
    },
    #[error("the template {template:?} gives no path for measurement {measurement:?}")]
    EmptyPath {
        measurement: String,
        template: String,
    },
    #[error(
        "field {field:?} of measurement {measurement:?} is {value}, which Graphite cannot store"
    )]
    NonFinite {
        measurement: String,
        field: String,
        value: f64,
    },
}

/// What [`GraphiteWriter::write_point`] did with one point.
#[derive(Debug, Clone, Default, PartialEq)]
#[must_use]
pub struct Written {
    /// Graphite lines appended.
    pub lines: usize,
    /// Fields that gave no line, by reason.
    pub skipped: Skipped,
    /// The first field that failed for a reason worth logging ([`SkipReason::is_error`]).
    pub error: Option<FieldError>,
}

/// The metric-name encoder as the gateway applies it to one path segment: the
/// GraphiteEncoder, plus `/` → `%2F` when `encode_slash` is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentEncoder {
    pub encoding: Encoding,
    pub encode_slash: bool,
}

impl SegmentEncoder {
    pub const fn new(encoding: Encoding, encode_slash: bool) -> Self {
        Self {
            encoding,
            encode_slash,
        }
    }

    /// True when [`SegmentEncoder::encode`] returns `segment` unchanged without having to
    /// run the encoder: the one-pass fast path.
    #[inline]
    pub fn is_safe(&self, segment: &str) -> bool {
        self.encoding == Encoding::Idna
            && metric_name::is_safe(segment)
            && !(self.encode_slash && memchr::memchr(b'/', segment.as_bytes()).is_some())
    }

    /// The segment made safe; borrowed when it already is.
    pub fn encode<'a>(&self, segment: &'a str) -> Result<Cow<'a, str>, metric_name::Error> {
        if self.is_safe(segment) {
            return Ok(Cow::Borrowed(segment));
        }
        let mut out = String::with_capacity(segment.len() + 8);
        self.encode_into(segment, &mut out)?;
        Ok(Cow::Owned(out))
    }

    /// [`SegmentEncoder::encode`], appending to `out`; on error `out` is left as it was.
    pub fn encode_into(&self, segment: &str, out: &mut String) -> Result<(), metric_name::Error> {
        if self.is_safe(segment) {
            out.push_str(segment);
            return Ok(());
        }
        let start = out.len();
        metric_name::encode_with_into(self.encoding, segment, out)?;
        if self.encode_slash && out[start..].contains('/') {
            let encoded = out.split_off(start);
            out.push_str(&encoded.replace('/', "%2F"));
        }
        Ok(())
    }

    /// [`SegmentEncoder::encode`], appending bytes to `out`, with `scratch` as working space.
    fn encode_bytes(
        &self,
        segment: &str,
        scratch: &mut String,
        out: &mut Vec<u8>,
    ) -> Result<(), metric_name::Error> {
        if self.is_safe(segment) {
            out.extend_from_slice(segment.as_bytes());
            return Ok(());
        }
        scratch.clear();
        metric_name::encode_with_into(self.encoding, segment, scratch)?;
        if self.encode_slash {
            for &b in scratch.as_bytes() {
                if b == b'/' {
                    out.extend_from_slice(b"%2F");
                } else {
                    out.push(b);
                }
            }
        } else {
            out.extend_from_slice(scratch.as_bytes());
        }
        Ok(())
    }

    /// Whether `segment` is something [`SegmentEncoder::encode`] could have produced, so that
    /// encoding a name twice changes nothing (`%2E`, `xn--` and `%2F` segments stay).
    pub fn is_encoded(&self, segment: &str) -> bool {
        if self.is_safe(segment) {
            return true;
        }
        match metric_name::decode_with(self.encoding, segment) {
            Ok(decoded) => self.encode(&decoded).is_ok_and(|e| e == segment),
            Err(_) => false,
        }
    }
}

/// One element of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Element {
    Measurement,
    Field,
    /// Every tag not named elsewhere in the template, sorted by key.
    Tags,
    /// The value of this tag.
    Tag(String),
}

#[derive(Debug, Clone)]
struct Template {
    source: String,
    elements: Vec<Element>,
    /// Index of the `field` element.
    field: Option<usize>,
    /// Tag keys the template names, which `tags` leaves out.
    named_tags: Vec<String>,
}

impl Template {
    fn parse(location: TemplateLocation, source: &str) -> Result<Self, InfluxTemplateError> {
        let mut elements = Vec::new();
        let mut named_tags: Vec<String> = Vec::new();
        let mut field = None;
        let mut tags = false;
        let repeated = |element: &str| InfluxTemplateError::Repeated {
            location,
            template: source.to_owned(),
            element: element.to_owned(),
        };
        for (i, word) in source.split('.').enumerate() {
            let element = match word {
                "" => {
                    return Err(InfluxTemplateError::EmptyElement {
                        location,
                        template: source.to_owned(),
                        position: i + 1,
                    })
                }
                "measurement" => Element::Measurement,
                "field" => {
                    if field.replace(i).is_some() {
                        return Err(repeated(word));
                    }
                    Element::Field
                }
                "tags" => {
                    if std::mem::replace(&mut tags, true) {
                        return Err(repeated(word));
                    }
                    Element::Tags
                }
                tag => {
                    if named_tags.iter().any(|t| t == tag) {
                        return Err(repeated(word));
                    }
                    named_tags.push(tag.to_owned());
                    Element::Tag(tag.to_owned())
                }
            };
            elements.push(element);
        }
        Ok(Self {
            source: source.to_owned(),
            elements,
            field,
            named_tags,
        })
    }
}

/// A Telegraf filter: the measurement name with `*` (any run) and `?` (one character).
#[derive(Debug, Clone)]
struct Filter(String);

impl Filter {
    fn parse(location: TemplateLocation, filter: &str) -> Result<Self, InfluxTemplateError> {
        if let Some(syntax) = filter
            .chars()
            .find(|c| matches!(c, '[' | ']' | '{' | '}' | '\\'))
        {
            return Err(InfluxTemplateError::UnsupportedFilter {
                location,
                filter: filter.to_owned(),
                syntax,
            });
        }
        Ok(Self(filter.to_owned()))
    }

    fn matches(&self, text: &str) -> bool {
        glob_matches(self.0.as_bytes(), text.as_bytes())
    }
}

/// Byte length of the UTF-8 sequence starting with `lead`.
#[inline]
fn utf8_len(lead: u8) -> usize {
    match lead {
        0..=0x7f => 1,
        0xf0.. => 4,
        0xe0.. => 3,
        _ => 2,
    }
}

/// `*`/`?` wildcard matching with single-star backtracking (linear for one star, quadratic at
/// worst). Both sides are UTF-8, so literal bytes only ever match whole characters and `?`
/// steps over one character.
fn glob_matches(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(b'?') => {
                p += 1;
                t += utf8_len(text[t]);
            }
            Some(&b) if b == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    let st = st + utf8_len(text[st]);
                    star = Some((sp, st));
                    p = sp + 1;
                    t = st;
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

/// The compiled translation; cheap to share, one [`GraphiteWriter`] per task does the work.
#[derive(Debug, Clone)]
pub struct InfluxToGraphite {
    default: Template,
    filtered: Vec<(Filter, Template)>,
    prefix: String,
    tag_support: bool,
    separator: String,
    bool_mode: BoolMode,
    encoder: SegmentEncoder,
    /// `sanitize = "telegraf"`: Telegraf's own path building instead of the encoder.
    telegraf: Option<telegraf::TelegrafNames>,
}

impl InfluxToGraphite {
    pub fn new(config: &InfluxToGraphiteConfig) -> Result<Self, InfluxTemplateError> {
        let encoder = SegmentEncoder::new(config.name_encoding, config.encode_slash);
        let mut default = Template::parse(TemplateLocation::Default, &config.template)?;
        let mut default_from = None;
        let mut filtered = Vec::new();
        for (i, line) in config.templates.iter().enumerate() {
            let location = TemplateLocation::Entry(i);
            let parts: Vec<&str> = line.split_whitespace().collect();
            match parts[..] {
                [template] => {
                    if let Some(first) = default_from.replace(location) {
                        return Err(InfluxTemplateError::DuplicateDefault { location, first });
                    }
                    default = Template::parse(location, template)?;
                }
                [filter, template] => filtered.push((
                    Filter::parse(location, filter)?,
                    Template::parse(location, template)?,
                )),
                _ => {
                    return Err(InfluxTemplateError::InvalidFormat {
                        location,
                        line: line.clone(),
                    })
                }
            }
        }
        let telegraf = match config.sanitize {
            Sanitize::Encode => {
                Self::check_prefix(&config.prefix, &encoder)?;
                None
            }
            // Telegraf cleans the prefix with the rest of the path.
            Sanitize::Telegraf => Some(
                telegraf::TelegrafNames::with(
                    &config.strict_sanitize_regex,
                    config.tag_sanitize_mode,
                    &config.prefix,
                    &config.separator,
                    config.bool_mode,
                )
                .map_err(InfluxTemplateError::StrictRegex)?,
            ),
        };
        Self::check_separator(&config.separator)?;
        Ok(Self {
            default,
            filtered,
            prefix: config.prefix.clone(),
            tag_support: config.tag_support,
            separator: config.separator.clone(),
            bool_mode: config.bool_mode,
            encoder,
            telegraf,
        })
    }

    /// The prefix is written verbatim, so it must already be what the encoder would write.
    fn check_prefix(prefix: &str, encoder: &SegmentEncoder) -> Result<(), InfluxTemplateError> {
        if prefix.is_empty() {
            return Ok(());
        }
        for segment in prefix.split('.') {
            let problem = match encoder.encode(segment) {
                _ if segment.is_empty() => {
                    "is empty (two dots in a row, or a dot at an end)".to_owned()
                }
                Ok(encoded) if encoded == segment => continue,
                Ok(encoded) => format!("is not Graphite-safe; write it encoded: {encoded:?}"),
                Err(e) => format!("cannot be encoded: {e}"),
            };
            return Err(InfluxTemplateError::Prefix {
                prefix: prefix.to_owned(),
                segment: segment.to_owned(),
                problem,
            });
        }
        Ok(())
    }

    fn check_separator(separator: &str) -> Result<(), InfluxTemplateError> {
        let problem = if separator.is_empty() {
            "must not be empty"
        } else if !separator.bytes().all(|b| b.is_ascii_graphic()) {
            "must be printable ASCII without spaces"
        } else if separator.contains([';', '=', '~']) {
            "must not contain `;`, `=` or `~`, which mean something in Graphite tagged series"
        } else {
            return Ok(());
        };
        Err(InfluxTemplateError::Separator {
            separator: separator.to_owned(),
            problem,
        })
    }

    /// A writer with its own scratch buffers; keep one per task and reuse it.
    pub fn writer(&self) -> GraphiteWriter<'_> {
        GraphiteWriter {
            conv: self,
            b: Buffers::default(),
        }
    }

    /// [`GraphiteWriter::write_point`] with per-thread scratch buffers.
    pub fn write_point(
        &self,
        point: &ParsedLine<'_>,
        timestamp_ns: i64,
        out: &mut Vec<u8>,
    ) -> Written {
        let mut writer = GraphiteWriter {
            conv: self,
            b: SPARE.with(std::cell::Cell::take),
        };
        let written = writer.write_point(point, timestamp_ns, out);
        SPARE.with(|spare| spare.set(writer.b));
        written
    }

    fn template_for(&self, measurement: &str) -> &Template {
        self.filtered
            .iter()
            .find(|(filter, _)| filter.matches(measurement))
            .map_or(&self.default, |(_, template)| template)
    }
}

/// A numeric value as Graphite gets it.
#[derive(Clone, Copy)]
enum Number {
    Float(f64),
    Int(i64),
    Uint(u64),
    Bool(bool),
}

/// The unescaped text of `s`, borrowed from the input unless escapes must be resolved.
fn unescape<'x>(s: &EscapedStr<'x>, buf: &'x mut String) -> &'x str {
    if !s.is_escaped() {
        return s.raw();
    }
    buf.clear();
    buf.extend(s.chunks());
    buf
}

/// Appends `segment` to a dot-joined path in `buf`.
fn push_dot_segment(
    buf: &mut Vec<u8>,
    encoder: &SegmentEncoder,
    scratch: &mut String,
    segment: &str,
) -> Result<(), metric_name::Error> {
    let start = buf.len();
    if start > 0 {
        buf.push(b'.');
    }
    encoder
        .encode_bytes(segment, scratch, buf)
        .inspect_err(|_| {
            buf.truncate(start);
        })
}

/// Where the head/tail of a point's path came from when it failed.
struct FrameError {
    element: String,
    text: String,
    source: metric_name::Error,
}

/// A writer's reusable scratch space.
#[derive(Debug, Default)]
struct Buffers {
    unescaped: String,
    encoded: String,
    /// The path before the field segment.
    head: Vec<u8>,
    /// The path after the field segment (tag mode: `;k=v...`).
    tail: Vec<u8>,
    /// Tag indices in output order.
    order: Vec<usize>,
    /// Tag mode: encoded tag keys, back to back.
    keys: Vec<u8>,
    /// Tag mode: tag i's key is `keys[spans[i].0..spans[i].1]`.
    spans: Vec<(usize, usize)>,
    /// Wide lines: whether field i is replaced by a later one with the same key.
    superseded: Vec<bool>,
    /// The template produced no segment of its own for the current point.
    template_empty: bool,
}

thread_local! {
    /// Buffers for [`InfluxToGraphite::write_point`], so the one-call API costs no
    /// allocation either once a thread has translated a few points.
    static SPARE: std::cell::Cell<Buffers> = std::cell::Cell::new(Buffers::default());
}

/// Translates points using an [`InfluxToGraphite`]; holds reusable scratch space.
#[derive(Debug)]
pub struct GraphiteWriter<'a> {
    conv: &'a InfluxToGraphite,
    b: Buffers,
}

impl GraphiteWriter<'_> {
    /// Appends one `path value seconds\n` line per numeric field of `point` to `out`.
    ///
    /// `timestamp_ns` is the point's time in nanoseconds (its own timestamp scaled by the
    /// request's precision, or the arrival time when it had none).
    pub fn write_point(
        &mut self,
        point: &ParsedLine<'_>,
        timestamp_ns: i64,
        out: &mut Vec<u8>,
    ) -> Written {
        if let Some(names) = &self.conv.telegraf {
            let mut buf = String::new();
            let template = (!self.conv.tag_support).then(|| {
                self.conv
                    .template_for(unescape(&point.measurement, &mut buf))
                    .source
                    .as_str()
            });
            return names.write_point(point, timestamp_ns, template, out);
        }
        let mut written = Written::default();
        let seconds = timestamp_ns.div_euclid(1_000_000_000);
        // The path around the field is built once per point, at the first numeric field.
        let mut frame: Option<Result<(), Box<FrameError>>> = None;
        let measurement = point.measurement;
        let conv = self.conv;
        let template = if conv.tag_support {
            None
        } else {
            let mut buf = String::new();
            Some(conv.template_for(unescape(&measurement, &mut buf)))
        };

        let wide = point.fields.len() > PAIRWISE_FIELDS;
        if wide {
            self.mark_superseded(point);
        }

        for (i, (key, value)) in point.fields.iter().enumerate() {
            let superseded = if wide {
                self.b.superseded[i]
            } else {
                point.fields[i + 1..].iter().any(|(k, _)| k == key)
            };
            if superseded {
                written.skipped.bump(SkipReason::DuplicateField);
                continue;
            }
            let number = match *value {
                FieldValue::F64(v) if !v.is_finite() => {
                    written.skipped.bump(SkipReason::NonFinite);
                    written.error.get_or_insert_with(|| FieldError::NonFinite {
                        measurement: measurement.as_str().into_owned(),
                        field: key.as_str().into_owned(),
                        value: v,
                    });
                    continue;
                }
                FieldValue::F64(v) => Number::Float(v),
                FieldValue::I64(v) => Number::Int(v),
                FieldValue::U64(v) => Number::Uint(v),
                FieldValue::Bool(_) if conv.bool_mode == BoolMode::Skip => {
                    written.skipped.bump(SkipReason::Boolean);
                    continue;
                }
                FieldValue::Bool(v) => Number::Bool(v),
                FieldValue::String(_) => {
                    written.skipped.bump(SkipReason::String);
                    continue;
                }
            };
            let frame = frame.get_or_insert_with(|| self.build_frame(point, template));
            if let Err(e) = frame {
                written.skipped.bump(SkipReason::Unencodable);
                written
                    .error
                    .get_or_insert_with(|| FieldError::Unencodable {
                        measurement: measurement.as_str().into_owned(),
                        element: e.element.clone(),
                        text: e.text.clone(),
                        source: e.source.clone(),
                    });
                continue;
            }
            let start = out.len();
            // Telegraf writes nothing when the template itself yields no segment (a prefix
            // alone is no path), unless there is a field to name.
            let nothing = template.is_some_and(|t| t.field.is_none()) && self.b.template_empty;
            match self.write_path(key, template.is_none_or(|t| t.field.is_some()), out) {
                Ok(()) if nothing || out.len() == start => {
                    out.truncate(start);
                    written.skipped.bump(SkipReason::EmptyPath);
                    written.error.get_or_insert_with(|| FieldError::EmptyPath {
                        measurement: measurement.as_str().into_owned(),
                        template: template.map_or_else(String::new, |t| t.source.clone()),
                    });
                    continue;
                }
                Ok(()) => {}
                Err(source) => {
                    out.truncate(start);
                    written.skipped.bump(SkipReason::Unencodable);
                    written
                        .error
                        .get_or_insert_with(|| FieldError::Unencodable {
                            measurement: measurement.as_str().into_owned(),
                            element: "field key".to_owned(),
                            text: key.as_str().into_owned(),
                            source,
                        });
                    continue;
                }
            }
            out.push(b' ');
            match number {
                Number::Float(v) => graphite_plaintext::encode_value(v, out),
                Number::Int(v) => out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes()),
                Number::Uint(v) => out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes()),
                Number::Bool(v) => out.push(if v { b'1' } else { b'0' }),
            }
            out.push(b' ');
            out.extend_from_slice(itoa::Buffer::new().format(seconds).as_bytes());
            out.push(b'\n');
            written.lines += 1;
        }
        written
    }

    /// `head [sep field] [.tail]` into `out`. The field is left out when the template has no
    /// `field` element or the field is Telegraf's `value`.
    fn write_path(
        &mut self,
        key: &EscapedStr<'_>,
        field_in_template: bool,
        out: &mut Vec<u8>,
    ) -> Result<(), metric_name::Error> {
        let start = out.len();
        out.extend_from_slice(&self.b.head);
        if field_in_template && *key != VALUE_FIELD {
            if out.len() > start {
                let sep = if self.conv.tag_support {
                    self.conv.separator.as_bytes()
                } else {
                    b"."
                };
                out.extend_from_slice(sep);
            }
            let field = unescape(key, &mut self.b.unescaped);
            self.conv
                .encoder
                .encode_bytes(field, &mut self.b.encoded, out)?;
        }
        if !self.b.tail.is_empty() {
            // Tag mode's tail starts with its own `;`.
            if !self.conv.tag_support && out.len() > start {
                out.push(b'.');
            }
            out.extend_from_slice(&self.b.tail);
        }
        Ok(())
    }

    /// Fills `head` and `tail` for `point`.
    fn build_frame(
        &mut self,
        point: &ParsedLine<'_>,
        template: Option<&Template>,
    ) -> Result<(), Box<FrameError>> {
        self.b.head.clear();
        self.b.tail.clear();
        match template {
            Some(template) => self.build_template_frame(point, template),
            None => self.build_tagged_frame(point),
        }
    }

    fn build_template_frame(
        &mut self,
        point: &ParsedLine<'_>,
        template: &Template,
    ) -> Result<(), Box<FrameError>> {
        let encoder = self.conv.encoder;
        self.b.head.extend_from_slice(self.conv.prefix.as_bytes());
        let prefix_len = self.b.head.len();
        for (i, element) in template.elements.iter().enumerate() {
            let buf = match template.field {
                Some(f) if i > f => &mut self.b.tail,
                _ => &mut self.b.head,
            };
            match element {
                Element::Field => {}
                Element::Measurement => {
                    let m = unescape(&point.measurement, &mut self.b.unescaped);
                    push_dot_segment(buf, &encoder, &mut self.b.encoded, m).map_err(|source| {
                        FrameError {
                            element: "measurement".to_owned(),
                            text: m.to_owned(),
                            source,
                        }
                    })?;
                }
                Element::Tag(key) => {
                    if let Some(value) = point.tag(key) {
                        let v = unescape(value, &mut self.b.unescaped);
                        push_dot_segment(buf, &encoder, &mut self.b.encoded, v).map_err(
                            |source| FrameError {
                                element: format!("value of tag {key:?}"),
                                text: v.to_owned(),
                                source,
                            },
                        )?;
                    }
                }
                Element::Tags => {
                    self.b.order.clear();
                    self.b.order.extend(
                        point
                            .tags
                            .iter()
                            .enumerate()
                            .filter(|(_, tag)| {
                                !template.named_tags.iter().any(|n| tag.0 == n.as_str())
                            })
                            .map(|(i, _)| i),
                    );
                    let tags = &point.tags;
                    if !self.b.order.is_sorted_by(|&a, &b| tags[a].0 <= tags[b].0) {
                        self.b
                            .order
                            .sort_unstable_by(|&a, &b| tags[a].0.cmp(&tags[b].0));
                    }
                    for &t in &self.b.order {
                        let (key, value) = &tags[t];
                        let v = unescape(value, &mut self.b.unescaped);
                        push_dot_segment(buf, &encoder, &mut self.b.encoded, v).map_err(
                            |source| FrameError {
                                element: format!("value of tag {:?}", key.as_str()),
                                text: v.to_owned(),
                                source,
                            },
                        )?;
                    }
                }
            }
        }
        self.b.template_empty = self.b.head.len() == prefix_len && self.b.tail.is_empty();
        Ok(())
    }

    /// Marks the fields a later field with the same key replaces, for lines too wide for the
    /// pairwise check (sorting keeps a hostile line with thousands of fields linear-ish).
    fn mark_superseded(&mut self, point: &ParsedLine<'_>) {
        let fields = &point.fields;
        self.b.order.clear();
        self.b.order.extend(0..fields.len());
        self.b
            .order
            .sort_unstable_by(|&a, &b| fields[a].0.cmp(&fields[b].0).then(a.cmp(&b)));
        self.b.superseded.clear();
        self.b.superseded.resize(fields.len(), false);
        for pair in self.b.order.windows(2) {
            if fields[pair[0]].0 == fields[pair[1]].0 {
                self.b.superseded[pair[0]] = true;
            }
        }
    }

    /// `[prefix sep] measurement` and `;k=v...` with keys sorted as Graphite normalizes them.
    fn build_tagged_frame(&mut self, point: &ParsedLine<'_>) -> Result<(), Box<FrameError>> {
        let conv = self.conv;
        let encoder = conv.encoder;
        self.b.head.extend_from_slice(conv.prefix.as_bytes());
        if !self.b.head.is_empty() {
            self.b.head.extend_from_slice(conv.separator.as_bytes());
        }
        let m = unescape(&point.measurement, &mut self.b.unescaped);
        encoder
            .encode_bytes(m, &mut self.b.encoded, &mut self.b.head)
            .map_err(|source| FrameError {
                element: "measurement".to_owned(),
                text: m.to_owned(),
                source,
            })?;

        self.b.keys.clear();
        self.b.spans.clear();
        for (key, _) in &point.tags {
            let k = unescape(key, &mut self.b.unescaped);
            let k = if k == RESERVED_TAG { RENAMED_TAG } else { k };
            let start = self.b.keys.len();
            encoder
                .encode_bytes(k, &mut self.b.encoded, &mut self.b.keys)
                .map_err(|source| FrameError {
                    element: "tag key".to_owned(),
                    text: k.to_owned(),
                    source,
                })?;
            self.b.spans.push((start, self.b.keys.len()));
        }
        let (keys, spans) = (&self.b.keys, &self.b.spans);
        let key_of = |i: usize| &keys[spans[i].0..spans[i].1];
        self.b.order.clear();
        self.b.order.extend(0..point.tags.len());
        if !self.b.order.is_sorted_by(|&a, &b| key_of(a) <= key_of(b)) {
            self.b
                .order
                .sort_unstable_by(|&a, &b| key_of(a).cmp(key_of(b)));
        }
        for &t in &self.b.order {
            self.b.tail.push(b';');
            self.b
                .tail
                .extend_from_slice(&self.b.keys[self.b.spans[t].0..self.b.spans[t].1]);
            self.b.tail.push(b'=');
            let at = self.b.tail.len();
            let (key, value) = &point.tags[t];
            let v = unescape(value, &mut self.b.unescaped);
            encoder
                .encode_bytes(v, &mut self.b.encoded, &mut self.b.tail)
                .map_err(|source| FrameError {
                    element: format!("value of tag {:?}", key.as_str()),
                    text: v.to_owned(),
                    source,
                })?;
            // Graphite refuses tag values starting with `~`; `%7E` decodes back to it.
            if self.b.tail.get(at) == Some(&b'~') {
                self.b.tail.splice(at..=at, *b"%7E");
            }
        }
        Ok(())
    }
}
