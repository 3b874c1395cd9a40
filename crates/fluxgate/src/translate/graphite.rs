//! Graphite → InfluxDB translation with the template semantics of InfluxDB 1.x's graphite
//! service (`services/graphite/parser.go` and `config.go`).
//!
//! Operators migrating off InfluxDB's own graphite listener already have `templates` lines that
//! shape their series; if fluxgate interpreted them even slightly differently, their dashboards
//! would silently split into new series. So this module follows InfluxDB's behaviour to the
//! letter, odd corners included, and pins each corner with a test recorded against a real
//! `influxd` 1.6.7:
//!
//! - A template line is `[filter] template [tag1=v1,tag2=v2]`. With two tokens the second is the
//!   tag list when it contains `=`, otherwise the pair is filter + template. A line without a
//!   filter replaces the built-in default template `measurement*`.
//! - The metric name is always split on `.`; `separator` only says what captured pieces are
//!   joined with. Elements apply position by position: `measurement` and `field` capture one
//!   segment, `measurement*` and `field*` capture the rest of the name and stop, an empty element
//!   skips a segment, any other word names a tag. Elements after a `*` element are never reached.
//! - Tags: the template's own tags come first and captured segments with the same key are
//!   *appended* to them (`host=x` plus a captured `localhost` gives `host=x.localhost`, joined with
//!   the separator); global `tags` only fill keys that are still absent. A key captured from an
//!   empty segment counts as present: it blocks the global tag, and the empty value is then left
//!   out of the series key as InfluxDB does.
//! - No measurement captured (or only an empty one) → the whole name; no field (or an empty one)
//!   → field `value`. The built-in default `measurement*` joins with `.` whatever `separator`
//!   says (InfluxDB compiles it once, before reading the configuration); a configured default
//!   template uses the separator.
//! - Filters form a tree of dot segments where `*` matches exactly one segment, an exact segment
//!   beats `*`, and a filter also matches longer names. The search never backtracks: once an
//!   exact segment matched, a dead end below it falls back to that node's template (usually none,
//!   hence the default template), not to a `*` sibling. A `*` node inherits its parent's
//!   template only if the parent's filter was listed *before* it, so template order matters.
//!
//! Where InfluxDB accepts a configuration and then fails every affected point at run time
//! (`field*` with `measurement*`, `field` twice before a `*` element), [`TemplateSet::new`]
//! rejects it up front, and it rejects a three-token line whose middle token holds tags (InfluxDB
//! silently ignores that token).
//!
//! Line protocol cannot carry everything InfluxDB's listener stores internally (a trailing
//! backslash, `#` at the start of a measurement, a newline from a decoded segment, a few backslash
//! sequences; see `Escaper`). Such points are refused with [`TranslateError::Unrepresentable`]
//! rather than written as lines InfluxDB would misread; the listener itself turns most of them
//! into broken series such as `m,g=1`. A single backslash before a comma or space in a measurement
//! stays that character's escape, as the listener reads it (`a\,b` becomes `a,b`).
//!
//! Graphite tagged series (`name;k=v`, which InfluxDB 1.x does not understand) arrive here as a
//! bare name plus `extra_tags`. Those tags were written by the sender for this very series, so
//! they win over every template-derived or global tag with the same key.
//!
//! The hot path ([`Translator::write_point`]) appends one line of line protocol straight into the
//! caller's buffer: no per-point allocation once the translator's scratch vectors have grown.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

#[cfg(test)]
mod tests;

/// The `[graphite]` translation settings, with InfluxDB 1.x's key names and defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GraphiteTemplateConfig {
    /// What captured pieces are joined with. The name itself is always split on `.`. Empty means
    /// `.`, as in InfluxDB.
    pub separator: String,
    /// Template lines, `[filter] template [tag1=value1,tag2=value2]`.
    pub templates: Vec<String>,
    /// Global `key=value` tags, added where a template did not set the key.
    pub tags: Vec<String>,
}

impl Default for GraphiteTemplateConfig {
    fn default() -> Self {
        Self {
            separator: DEFAULT_SEPARATOR.to_owned(),
            templates: Vec::new(),
            tags: Vec::new(),
        }
    }
}

const DEFAULT_SEPARATOR: &str = ".";
const DEFAULT_TEMPLATE: &str = "measurement*";
const DEFAULT_FIELD: &str = "value";

/// Where an invalid tag was configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagLocation {
    /// In the tag list of `templates[i]`.
    Template(usize),
    /// In the global `tags[i]`.
    Global(usize),
}

impl fmt::Display for TagLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Template(i) => write!(f, "templates[{i}]"),
            Self::Global(i) => write!(f, "tags[{i}]"),
        }
    }
}

/// A configuration the graphite template engine refuses, with the offending entry's position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("graphite templates[{index}]: missing template (the entry is blank)")]
    MissingTemplate { index: usize },
    #[error(
        "graphite templates[{index}]: invalid template format {line:?}: \
         expected `[filter] template [tag1=value1,tag2=value2]`"
    )]
    InvalidFormat { index: usize, line: String },
    #[error(
        "graphite templates[{index}]: no measurement in template {template:?}: \
         it needs a `measurement` or `measurement*` element"
    )]
    NoMeasurement { index: usize, template: String },
    #[error(
        "graphite templates[{index}]: either 'field*' or 'measurement*' can be used in each \
         template (but not both together): {template:?}"
    )]
    FieldAndMeasurementWildcards { index: usize, template: String },
    #[error(
        "graphite templates[{index}]: 'field' can only be used once in each template: {template:?}"
    )]
    FieldTwice { index: usize, template: String },
    #[error(
        "graphite templates[{index}]: duplicate default template (no filter); \
         templates[{first}] is already the default"
    )]
    DuplicateDefault { index: usize, first: usize },
    #[error("graphite templates[{index}]: duplicate filter {filter:?}, already used by templates[{first}]")]
    DuplicateFilter {
        index: usize,
        first: usize,
        filter: String,
    },
    #[error("graphite templates[{index}]: filter {filter:?} contains a blank section")]
    BlankFilterSection { index: usize, filter: String },
    #[error(
        "graphite templates[{index}]: invalid filter wildcard section in {filter:?}: \
         `*` must be a whole section"
    )]
    InvalidFilterWildcard { index: usize, filter: String },
    #[error("graphite {location}: invalid tag {tag:?}: expected key=value with a non-empty key and value")]
    InvalidTag { location: TagLocation, tag: String },
    #[error("graphite {location}: tag {tag:?} cannot be written as line protocol: {reason}")]
    UnrepresentableTag {
        location: TagLocation,
        tag: String,
        reason: &'static str,
    },
}

/// Why one point could not be translated. Each error drops that point only; the stream goes on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TranslateError {
    /// NaN has no line-protocol spelling (collectd sends it for unknown values).
    #[error("value is NaN")]
    NaN,
    /// ±Inf has no line-protocol spelling either.
    #[error("value is {}infinite", if *negative { "-" } else { "+" })]
    Infinite { negative: bool },
    #[error("empty metric name")]
    EmptyName,
    /// The configured segment decoder refused a segment.
    #[error("cannot decode segment {segment:?} of {name:?}: {reason}")]
    Decode {
        name: String,
        segment: String,
        reason: String,
    },
    /// Line protocol has no escape for a newline, for `#`, tab or NUL at the start of a
    /// measurement, or for a trailing backslash; InfluxDB misreads a few more backslash
    /// sequences in field keys (see `Escaper`).
    #[error("{element} from {name:?} cannot be written as line protocol: {reason}")]
    Unrepresentable {
        element: &'static str,
        name: String,
        reason: &'static str,
    },
}

impl TranslateError {
    /// A short, stable label for the `reason` label of rejection counters.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NaN => "nan",
            Self::Infinite { .. } => "infinite",
            Self::EmptyName => "empty_name",
            Self::Decode { .. } => "name_decode",
            Self::Unrepresentable { .. } => "unrepresentable",
        }
    }
}

/// Turns one encoded name segment (`%2E`, `xn--`, …) back into the text it stands for before it
/// becomes a measurement, tag value or field key. Any `fn(&str) -> Result<Cow<'_, str>, E>` with
/// a displayable `E` is one.
pub trait SegmentDecoder: Send + Sync {
    fn decode<'s>(&self, segment: &'s str) -> Result<Cow<'s, str>, String>;
}

impl<F, E> SegmentDecoder for F
where
    F: for<'s> Fn(&'s str) -> Result<Cow<'s, str>, E> + Send + Sync,
    E: fmt::Display,
{
    fn decode<'s>(&self, segment: &'s str) -> Result<Cow<'s, str>, String> {
        self(segment).map_err(|e| e.to_string())
    }
}

/// What a name becomes: the introspection view behind `fluxgate dry-run` and the tests. It holds
/// what InfluxDB will show for the line [`Translator::write_point`] writes: unescaped, tags sorted
/// by key, tags with empty values left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub measurement: String,
    pub tags: Vec<(String, String)>,
    pub field: String,
    /// Index in `templates` of the template used; `None` for the built-in `measurement*`.
    pub template: Option<usize>,
}

/// The compiled templates: immutable, shared by every connection (wrap it in an `Arc`).
pub struct TemplateSet {
    templates: Vec<Template>,
    default: usize,
    nodes: Vec<Node>,
    separator: Box<str>,
    decoder: Option<Box<dyn SegmentDecoder>>,
}

impl fmt::Debug for TemplateSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TemplateSet")
            .field("templates", &self.templates)
            .field("default", &self.default)
            .field("separator", &self.separator)
            .field("decoder", &self.decoder.is_some())
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct Template {
    /// Index in the configuration; `None` for the built-in default.
    source: Option<usize>,
    /// What captured pieces are joined with: the configured separator, except for the
    /// built-in default, which InfluxDB compiles once with `.` whatever the configuration says.
    separator: Box<str>,
    /// Positions of `measurement` elements before the first `*` element.
    measurement: Box<[usize]>,
    measurement_rest: Option<usize>,
    field: Option<usize>,
    field_rest: Option<usize>,
    /// Every key this template can write, global tags included, sorted by key.
    tags: Box<[TagPlan]>,
}

#[derive(Debug)]
struct TagPlan {
    key: Box<str>,
    /// The template's own value for the key, which captured segments are appended to.
    preset: Option<Box<str>>,
    /// Positions of the elements naming this key, before the first `*` element.
    positions: Box<[usize]>,
    global: Option<Box<str>>,
}

/// One node of InfluxDB's filter tree, flattened into an arena.
#[derive(Debug)]
struct Node {
    value: Box<str>,
    /// Exact children, sorted by value (byte order, as Go compares strings).
    children: Vec<usize>,
    wildcard: Option<usize>,
    template: Option<usize>,
}

impl Node {
    fn new(value: &str, template: Option<usize>) -> Self {
        Self {
            value: value.into(),
            children: Vec::new(),
            wildcard: None,
            template,
        }
    }
}

/// A template line split into its three parts.
struct Line<'a> {
    filter: &'a str,
    template: &'a str,
    tags: Option<&'a str>,
}

fn split_line(index: usize, line: &str) -> Result<Line<'_>, TemplateError> {
    let mut parts = line.split_whitespace();
    let invalid = || TemplateError::InvalidFormat {
        index,
        line: line.to_owned(),
    };
    let parsed = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (None, ..) => return Err(TemplateError::MissingTemplate { index }),
        (Some(template), None, ..) => Line {
            filter: "",
            template,
            tags: None,
        },
        (Some(template), Some(tags), None, _) if tags.contains('=') => Line {
            filter: "",
            template,
            tags: Some(tags),
        },
        (Some(filter), Some(template), tags, None) if !template.contains('=') => Line {
            filter,
            template,
            tags,
        },
        _ => return Err(invalid()),
    };
    Ok(parsed)
}

/// Parses `key=value` the way InfluxDB's `validateTag` accepts it: exactly one `=`, both sides
/// non-empty.
fn parse_tag(location: TagLocation, tag: &str) -> Result<(&str, &str), TemplateError> {
    let invalid = || TemplateError::InvalidTag {
        location,
        tag: tag.to_owned(),
    };
    let (key, value) = tag.split_once('=').ok_or_else(invalid)?;
    if key.is_empty() || value.is_empty() || value.contains('=') {
        return Err(invalid());
    }
    for text in [key, value] {
        let mut scratch = Vec::new();
        let mut esc = Escaper::new(Ctx::Tag);
        if let Err(reason) = esc.push(&mut scratch, text).and_then(|()| esc.finish()) {
            return Err(TemplateError::UnrepresentableTag {
                location,
                tag: tag.to_owned(),
                reason,
            });
        }
    }
    Ok((key, value))
}

/// The elements of one template, as far as InfluxDB's `Apply` can ever reach.
struct Elements<'a> {
    measurement: Vec<usize>,
    measurement_rest: Option<usize>,
    field: Option<usize>,
    field_rest: Option<usize>,
    tags: Vec<(&'a str, usize)>,
}

fn parse_elements(index: usize, template: &str) -> Result<Elements<'_>, TemplateError> {
    let elements: Vec<&str> = template.split('.').collect();
    let owned = || template.to_owned();
    if !elements
        .iter()
        .any(|e| *e == "measurement" || *e == "measurement*")
    {
        return Err(TemplateError::NoMeasurement {
            index,
            template: owned(),
        });
    }
    if elements.contains(&"measurement*") && elements.contains(&"field*") {
        return Err(TemplateError::FieldAndMeasurementWildcards {
            index,
            template: owned(),
        });
    }
    let mut parsed = Elements {
        measurement: Vec::new(),
        measurement_rest: None,
        field: None,
        field_rest: None,
        tags: Vec::new(),
    };
    for (i, element) in elements.into_iter().enumerate() {
        match element {
            "measurement" => parsed.measurement.push(i),
            "measurement*" => {
                parsed.measurement_rest = Some(i);
                break;
            }
            "field" if parsed.field.is_some() => {
                return Err(TemplateError::FieldTwice {
                    index,
                    template: owned(),
                })
            }
            "field" => parsed.field = Some(i),
            "field*" => {
                parsed.field_rest = Some(i);
                break;
            }
            "" => {}
            key => parsed.tags.push((key, i)),
        }
    }
    Ok(parsed)
}

fn validate_filter(index: usize, filter: &str) -> Result<(), TemplateError> {
    for section in filter.split('.') {
        if section.is_empty() {
            return Err(TemplateError::BlankFilterSection {
                index,
                filter: filter.to_owned(),
            });
        }
        if section != "*" && section.contains('*') {
            return Err(TemplateError::InvalidFilterWildcard {
                index,
                filter: filter.to_owned(),
            });
        }
    }
    Ok(())
}

fn build_template(
    source: Option<usize>,
    separator: &str,
    elements: Elements<'_>,
    preset: &[(&str, &str)],
    global: &BTreeMap<&str, &str>,
) -> Template {
    #[derive(Default)]
    struct Acc<'a> {
        preset: Option<&'a str>,
        positions: Vec<usize>,
        global: Option<&'a str>,
    }
    let mut keys: BTreeMap<&str, Acc<'_>> = BTreeMap::new();
    for &(key, value) in preset {
        keys.entry(key).or_default().preset = Some(value);
    }
    for &(key, position) in &elements.tags {
        keys.entry(key).or_default().positions.push(position);
    }
    for (&key, &value) in global {
        keys.entry(key).or_default().global = Some(value);
    }
    let tags = keys
        .into_iter()
        .map(|(key, acc)| TagPlan {
            key: key.into(),
            preset: acc.preset.map(Into::into),
            positions: acc.positions.into(),
            global: acc.global.map(Into::into),
        })
        .collect();
    Template {
        source,
        separator: separator.into(),
        measurement: elements.measurement.into(),
        measurement_rest: elements.measurement_rest,
        field: elements.field,
        field_rest: elements.field_rest,
        tags,
    }
}

impl TemplateSet {
    /// Validates the configuration as InfluxDB's `Config.Validate` does (same order of checks)
    /// and compiles it.
    pub fn new(config: &GraphiteTemplateConfig) -> Result<Self, TemplateError> {
        struct Parsed<'c> {
            filter: &'c str,
            elements: Elements<'c>,
            preset: Vec<(&'c str, &'c str)>,
        }
        let mut parsed = Vec::with_capacity(config.templates.len());
        let mut filters: BTreeMap<&str, usize> = BTreeMap::new();
        for (index, text) in config.templates.iter().enumerate() {
            let line = split_line(index, text)?;
            let elements = parse_elements(index, line.template)?;
            if let Some(&first) = filters.get(line.filter) {
                return Err(if line.filter.is_empty() {
                    TemplateError::DuplicateDefault { index, first }
                } else {
                    TemplateError::DuplicateFilter {
                        index,
                        first,
                        filter: line.filter.to_owned(),
                    }
                });
            }
            filters.insert(line.filter, index);
            if !line.filter.is_empty() {
                validate_filter(index, line.filter)?;
            }
            let mut preset: Vec<(&str, &str)> = Vec::new();
            for tag in line.tags.into_iter().flat_map(|tags| tags.split(',')) {
                let (key, value) = parse_tag(TagLocation::Template(index), tag)?;
                // Later duplicates win, as with InfluxDB's `Tags.SetString`.
                preset.retain(|(k, _)| *k != key);
                preset.push((key, value));
            }
            for &(key, _) in &elements.tags {
                check_static_key(TagLocation::Template(index), key)?;
            }
            parsed.push(Parsed {
                filter: line.filter,
                elements,
                preset,
            });
        }

        let mut global = BTreeMap::new();
        for (i, tag) in config.tags.iter().enumerate() {
            let (key, value) = parse_tag(TagLocation::Global(i), tag)?;
            global.insert(key, value);
        }

        let separator = if config.separator.is_empty() {
            DEFAULT_SEPARATOR
        } else {
            config.separator.as_str()
        };
        let builtin = parse_elements(0, DEFAULT_TEMPLATE)?;
        let mut set = Self {
            templates: vec![build_template(
                None,
                DEFAULT_SEPARATOR,
                builtin,
                &[],
                &global,
            )],
            default: 0,
            nodes: vec![Node::new("", None)],
            separator: separator.into(),
            decoder: None,
        };
        for (index, p) in parsed.into_iter().enumerate() {
            let id = set.templates.len();
            set.templates.push(build_template(
                Some(index),
                separator,
                p.elements,
                &p.preset,
                &global,
            ));
            if p.filter.is_empty() {
                set.default = id;
            } else {
                set.insert_filter(p.filter, id);
            }
        }
        Ok(set)
    }

    /// Plugs in the decoder that turns each captured name segment back into Unicode.
    #[must_use]
    pub fn with_decoder(mut self, decoder: impl SegmentDecoder + 'static) -> Self {
        self.decoder = Some(Box::new(decoder));
        self
    }

    /// The separator captured pieces are joined with.
    pub fn separator(&self) -> &str {
        &self.separator
    }

    /// A per-task translator holding the scratch space `write_point` reuses.
    pub fn translator(&self) -> Translator<'_> {
        Translator::new(self)
    }

    /// What `name` (with a tagged series' tags) becomes. Convenience for tools and tests; the
    /// data path uses a [`Translator`].
    pub fn apply(
        &self,
        name: &str,
        extra_tags: &[(&str, &str)],
    ) -> Result<Applied, TranslateError> {
        self.translator().apply(name, extra_tags)
    }

    /// InfluxDB's `node.insert`, including its quirk that a new `*` node inherits the template
    /// its parent has *at that moment*.
    fn insert_filter(&mut self, filter: &str, template: usize) {
        let mut current = 0;
        for value in filter.split('.') {
            let node = &self.nodes[current];
            let existing = if value == "*" {
                node.wildcard
            } else {
                node.children
                    .binary_search_by(|&c| self.nodes[c].value.as_ref().cmp(value))
                    .ok()
                    .map(|i| node.children[i])
            };
            current = match existing {
                Some(child) => child,
                None => {
                    let id = self.nodes.len();
                    let inherited = if value == "*" { node.template } else { None };
                    self.nodes.push(Node::new(value, inherited));
                    if value == "*" {
                        self.nodes[current].wildcard = Some(id);
                    } else {
                        let nodes = &self.nodes;
                        let at = nodes[current]
                            .children
                            .partition_point(|&c| nodes[c].value.as_ref() < value);
                        self.nodes[current].children.insert(at, id);
                    }
                    id
                }
            };
        }
        self.nodes[current].template = Some(template);
    }

    /// InfluxDB's `matcher.Match`/`node.search`: exact child first, else the `*` child, never
    /// backtracking; the template of the node where the walk stops, else the default.
    fn lookup(&self, name: &str, segments: &[(usize, usize)]) -> usize {
        let mut node = &self.nodes[0];
        for &(start, end) in segments {
            if node.children.is_empty() && node.wildcard.is_none() {
                break;
            }
            let part = &name[start..end];
            let exact = node
                .children
                .binary_search_by(|&c| self.nodes[c].value.as_ref().cmp(part));
            node = match (exact, node.wildcard) {
                (Ok(i), _) => &self.nodes[node.children[i]],
                (Err(_), Some(w)) => &self.nodes[w],
                (Err(_), None) => break,
            };
        }
        node.template.unwrap_or(self.default)
    }
}

/// Template tag keys never change, so a key line protocol cannot carry is a configuration error.
fn check_static_key(location: TagLocation, key: &str) -> Result<(), TemplateError> {
    let mut scratch = Vec::new();
    let mut esc = Escaper::new(Ctx::Tag);
    esc.push(&mut scratch, key)
        .and_then(|()| esc.finish())
        .map_err(|reason| TemplateError::UnrepresentableTag {
            location,
            tag: key.to_owned(),
            reason,
        })
}

/// Per-connection translation state: the shared templates plus scratch vectors that stop
/// allocating once they have grown to the longest name seen.
#[derive(Debug)]
pub struct Translator<'a> {
    set: &'a TemplateSet,
    segments: Vec<(usize, usize)>,
    order: Vec<usize>,
}

impl<'a> Translator<'a> {
    pub fn new(set: &'a TemplateSet) -> Self {
        Self {
            set,
            segments: Vec::new(),
            order: Vec::new(),
        }
    }

    /// Appends `measurement[,tags] field=value timestamp\n` for one graphite sample to `out`.
    /// On error `out` is left exactly as it was.
    pub fn write_point(
        &mut self,
        name: &str,
        extra_tags: &[(&str, &str)],
        value: f64,
        timestamp_ns: i64,
        out: &mut Vec<u8>,
    ) -> Result<(), TranslateError> {
        self.write_point_spelled(name, extra_tags, value, None, timestamp_ns, out)
    }

    /// [`Translator::write_point`] with the value's text when the caller has it and it is the
    /// very text the line-protocol writer would make of `value` (see [`spelled_as_written`]):
    /// it is then copied instead of formatted again.
    pub fn write_point_spelled(
        &mut self,
        name: &str,
        extra_tags: &[(&str, &str)],
        value: f64,
        spelled: Option<&[u8]>,
        timestamp_ns: i64,
        out: &mut Vec<u8>,
    ) -> Result<(), TranslateError> {
        if value.is_nan() {
            return Err(TranslateError::NaN);
        }
        if value.is_infinite() {
            return Err(TranslateError::Infinite {
                negative: value < 0.0,
            });
        }
        let start = out.len();
        if let Err(e) = self.emit(name, extra_tags, &mut LpSink::new(out)) {
            out.truncate(start);
            return Err(e);
        }
        out.push(b'=');
        match spelled {
            Some(text) => out.extend_from_slice(text),
            None => write_float(out, value),
        }
        out.push(b' ');
        out.extend_from_slice(itoa::Buffer::new().format(timestamp_ns).as_bytes());
        out.push(b'\n');
        Ok(())
    }

    /// Appends what `write_point` writes before the value for `name` without tags of its own:
    /// `measurement[,tags] field`. The text depends on the name alone, so a caller may keep
    /// it ([`crate::name_cache`]). On error `out` is left as it was.
    pub fn write_series(&mut self, name: &str, out: &mut Vec<u8>) -> Result<(), TranslateError> {
        let start = out.len();
        if let Err(e) = self.emit(name, &[], &mut LpSink::new(out)) {
            out.truncate(start);
            return Err(e);
        }
        Ok(())
    }

    /// What `name` becomes, with the same errors `write_point` would give (bar the value's).
    pub fn apply(
        &mut self,
        name: &str,
        extra_tags: &[(&str, &str)],
    ) -> Result<Applied, TranslateError> {
        self.emit(name, extra_tags, &mut LpSink::new(&mut Vec::new()))?;
        let mut collect = CollectSink::default();
        let template = self.emit(name, extra_tags, &mut collect)?;
        Ok(Applied {
            measurement: collect.measurement,
            tags: collect.tags,
            field: collect.field,
            template: self.set.templates[template].source,
        })
    }

    /// The template engine proper, writing pieces to a sink; returns the template index used.
    fn emit<S: Sink>(
        &mut self,
        name: &str,
        extra: &[(&str, &str)],
        sink: &mut S,
    ) -> Result<usize, TranslateError> {
        if name.is_empty() {
            return Err(TranslateError::EmptyName);
        }
        self.segments.clear();
        let mut start = 0;
        for dot in memchr::memchr_iter(b'.', name.as_bytes()) {
            self.segments.push((start, dot));
            start = dot + 1;
        }
        self.segments.push((start, name.len()));

        let set = self.set;
        let id = set.lookup(name, &self.segments);
        let template = &set.templates[id];
        let mut w = Writer {
            name,
            segments: &self.segments,
            separator: &template.separator,
            decoder: set.decoder.as_deref(),
            sink,
        };
        let segment_count = self.segments.len();

        // Measurement.
        w.begin(Part::Measurement)?;
        let mut joined = Joined::default();
        for &p in template
            .measurement
            .iter()
            .take_while(|&&p| p < segment_count)
        {
            w.segment(&mut joined, p)?;
        }
        if let Some(rest) = template.measurement_rest.filter(|&r| r < segment_count) {
            w.rest(&mut joined, rest)?;
        }
        if joined.is_empty() {
            w.sink.rollback();
            w.begin(Part::Measurement)?;
            w.whole_name()?;
        }
        w.commit(Part::Measurement)?;

        // Tags: the template's plan and the series' own tags, merged in key order.
        let extra_order = if extra.windows(2).all(|p| p[0].0 < p[1].0) {
            None
        } else {
            self.order.clear();
            self.order.extend(0..extra.len());
            self.order
                .sort_unstable_by(|&a, &b| extra[a].0.cmp(extra[b].0).then(a.cmp(&b)));
            Some(&self.order)
        };
        let extra_at = |i: usize| match extra_order {
            None => extra[i],
            Some(order) => extra[order[i]],
        };
        let (mut pi, mut ei) = (0, 0);
        loop {
            // The next usable series tag; of equal keys the last one given wins.
            while ei < extra.len() {
                let (k, v) = extra_at(ei);
                let shadowed = ei + 1 < extra.len() && extra_at(ei + 1).0 == k;
                if !k.is_empty() && !v.is_empty() && !shadowed {
                    break;
                }
                ei += 1;
            }
            let plan = template.tags.get(pi);
            let series = (ei < extra.len()).then(|| extra_at(ei));
            match (plan, series) {
                (None, None) => break,
                (Some(plan), Some((k, _))) if plan.key.as_ref() < k => {
                    w.plan_tag(plan)?;
                    pi += 1;
                }
                (Some(plan), None) => {
                    w.plan_tag(plan)?;
                    pi += 1;
                }
                (plan, Some((k, v))) => {
                    if plan.is_some_and(|p| p.key.as_ref() == k) {
                        pi += 1;
                    }
                    w.begin(Part::Tag(k))?;
                    w.push(v)?;
                    w.commit(Part::Tag(k))?;
                    ei += 1;
                }
            }
        }

        // Field.
        w.begin(Part::Field)?;
        let mut joined = Joined::default();
        match (template.field_rest, template.field) {
            (Some(rest), _) if rest < segment_count => w.rest(&mut joined, rest)?,
            (_, Some(p)) if p < segment_count => w.segment(&mut joined, p)?,
            _ => {}
        }
        if joined.is_empty() {
            w.sink.rollback();
            w.begin(Part::Field)?;
            w.push(DEFAULT_FIELD)?;
        }
        w.commit(Part::Field)?;
        Ok(id)
    }
}

/// Tracks a separator-joined value, whose emptiness decides the `value`/whole-name fallbacks
/// and the skipping of empty tags exactly as Go's `strings.Join(...) == ""` does.
#[derive(Default)]
struct Joined {
    pieces: usize,
    bytes: usize,
}

impl Joined {
    fn is_empty(&self) -> bool {
        self.pieces == 0 || (self.pieces == 1 && self.bytes == 0)
    }
}

/// The emit state: the split name, the decoder and the sink.
struct Writer<'w, S> {
    name: &'w str,
    segments: &'w [(usize, usize)],
    separator: &'w str,
    decoder: Option<&'w dyn SegmentDecoder>,
    sink: &'w mut S,
}

impl<S: Sink> Writer<'_, S> {
    fn err(&self, e: SinkError) -> TranslateError {
        TranslateError::Unrepresentable {
            element: e.element,
            name: excerpt(self.name),
            reason: e.reason,
        }
    }

    fn begin(&mut self, part: Part<'_>) -> Result<(), TranslateError> {
        self.sink.begin(part).map_err(|e| self.err(e))
    }

    fn push(&mut self, text: &str) -> Result<(), TranslateError> {
        self.sink.push(text).map_err(|e| self.err(e))
    }

    fn commit(&mut self, part: Part<'_>) -> Result<(), TranslateError> {
        self.sink.commit(part).map_err(|e| self.err(e))
    }

    /// Appends one decoded segment, preceded by the separator unless it is the first piece.
    fn segment(&mut self, joined: &mut Joined, index: usize) -> Result<(), TranslateError> {
        if joined.pieces > 0 {
            self.push(self.separator)?;
        }
        let (start, end) = self.segments[index];
        let raw = &self.name[start..end];
        joined.pieces += 1;
        match self.decoder {
            None => {
                joined.bytes += raw.len();
                self.push(raw)
            }
            Some(decoder) => {
                let decoded = decoder
                    .decode(raw)
                    .map_err(|reason| TranslateError::Decode {
                        name: excerpt(self.name),
                        segment: excerpt(raw),
                        reason,
                    })?;
                joined.bytes += decoded.len();
                self.push(&decoded)
            }
        }
    }

    /// Appends the segments from `from` to the end (`measurement*`, `field*`).
    fn rest(&mut self, joined: &mut Joined, from: usize) -> Result<(), TranslateError> {
        if self.decoder.is_none() && self.separator == "." {
            // Joining with `.` what was split on `.` is the raw tail of the name.
            if joined.pieces > 0 {
                self.push(self.separator)?;
            }
            let count = self.segments.len() - from;
            let tail = &self.name[self.segments[from].0..];
            joined.pieces += count;
            joined.bytes += tail.len() - (count - 1);
            return self.push(tail);
        }
        for i in from..self.segments.len() {
            self.segment(joined, i)?;
        }
        Ok(())
    }

    /// InfluxDB's fallback measurement: the whole name (segments decoded, joined with `.`).
    fn whole_name(&mut self) -> Result<(), TranslateError> {
        if self.decoder.is_none() {
            return self.push(self.name);
        }
        let separator = std::mem::replace(&mut self.separator, ".");
        let result = self.rest(&mut Joined::default(), 0);
        self.separator = separator;
        result
    }

    fn plan_tag(&mut self, plan: &TagPlan) -> Result<(), TranslateError> {
        let segment_count = self.segments.len();
        let captured = plan.positions.first().is_some_and(|&p| p < segment_count);
        let part = Part::Tag(&plan.key);
        if plan.preset.is_none() && !captured {
            if let Some(global) = &plan.global {
                self.begin(part)?;
                self.push(global)?;
                self.commit(part)?;
            }
            return Ok(());
        }
        self.begin(part)?;
        let mut joined = Joined::default();
        if let Some(preset) = &plan.preset {
            joined.pieces = 1;
            joined.bytes = preset.len();
            self.push(preset)?;
        }
        for &p in plan.positions.iter().take_while(|&&p| p < segment_count) {
            self.segment(&mut joined, p)?;
        }
        if joined.is_empty() {
            self.sink.rollback();
            Ok(())
        } else {
            self.commit(part)
        }
    }
}

/// Shortest round-tripping spelling of a finite float. Without an `i` suffix line protocol reads
/// `12` as a float, and graphite counters are mostly integral, which itoa writes several times
/// faster than ryu; below 2^53 every integer is exact, so both spell the same number.
/// Whether `text`, a value spelled canonically for Graphite plaintext (a plain decimal of at
/// most 15 digits, no exponent, no trailing fractional zeros: what
/// [`graphite_plaintext::is_canonical`] accepts), is also what [`write_float`] writes for the
/// f64 it reads as. Integers are (both print them whole); fractions are the same shortest
/// digits, which ryu lays out positionally unless more than four zeros follow the point
/// (`0.000001` becomes `1e-6`), so those are not.
pub fn spelled_as_written(text: &[u8]) -> bool {
    let digits = text.strip_prefix(b"-").unwrap_or(text);
    match digits.strip_prefix(b"0.") {
        Some(frac) => frac.iter().take_while(|&&b| b == b'0').count() < 5,
        None => true,
    }
}

fn write_float(out: &mut Vec<u8>, value: f64) {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    if value.fract() == 0.0 && value.abs() < EXACT && !(value == 0.0 && value.is_sign_negative()) {
        // In range and integral, so the cast is exact.
        let integer = value as i64;
        out.extend_from_slice(itoa::Buffer::new().format(integer).as_bytes());
        return;
    }
    let mut buffer = ryu::Buffer::new();
    let text = buffer.format_finite(value);
    out.extend_from_slice(text.strip_suffix(".0").unwrap_or(text).as_bytes());
}

fn excerpt(text: &str) -> String {
    const MAX: usize = 64;
    if text.len() <= MAX {
        return text.to_owned();
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[derive(Clone, Copy)]
enum Part<'k> {
    Measurement,
    Tag(&'k str),
    Field,
}

struct SinkError {
    element: &'static str,
    reason: &'static str,
}

/// Receives the pieces of one point: each element is begun, filled piece by piece, then either
/// committed or rolled back (an empty tag, or a fallback replacing what was written).
trait Sink {
    fn begin(&mut self, part: Part<'_>) -> Result<(), SinkError>;
    fn push(&mut self, text: &str) -> Result<(), SinkError>;
    fn commit(&mut self, part: Part<'_>) -> Result<(), SinkError>;
    fn rollback(&mut self);
}

/// Escaping context. Measurements escape comma and space; tag keys, tag values and field keys
/// also escape `=`. Field keys are read by different code in InfluxDB, hence their own rules.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ctx {
    Measurement,
    Tag,
    Field,
}

const PLAIN: u8 = 0;
const ESCAPE: u8 = 1;
const BACKSLASH: u8 = 2;
const NEWLINE: u8 = 3;
const QUOTE: u8 = 4;

const fn class_table(ctx: Ctx) -> [u8; 256] {
    let mut table = [PLAIN; 256];
    table[b',' as usize] = ESCAPE;
    table[b' ' as usize] = ESCAPE;
    if !matches!(ctx, Ctx::Measurement) {
        table[b'=' as usize] = ESCAPE;
    }
    if matches!(ctx, Ctx::Field) {
        table[b'"' as usize] = QUOTE;
    }
    table[b'\\' as usize] = BACKSLASH;
    table[b'\n' as usize] = NEWLINE;
    table
}

static MEASUREMENT_CLASS: [u8; 256] = class_table(Ctx::Measurement);
static TAG_CLASS: [u8; 256] = class_table(Ctx::Tag);
static FIELD_CLASS: [u8; 256] = class_table(Ctx::Field);

const TRAILING_BACKSLASH: &str = "a backslash at the end would escape the delimiter after it";

/// Escapes one element that may arrive in several pieces, refusing what InfluxDB 1.x/2.x would
/// misread. The state (the length of the current run of backslashes) is carried across pieces.
///
/// - Their measurement and tag scanners treat any byte after a `\` as escaped, so a trailing
///   backslash would swallow the delimiter after it.
/// - A point's measurement goes through `unescapeMeasurement` once more on the way in (that is
///   how InfluxDB's graphite listener turns `a\,b` into `a,b`). So a single backslash before a
///   comma or space in a measurement is kept as that character's escape, as the listener reads
///   it; after two or more, InfluxDB files the series and its fields under different names.
/// - Their field scanner pairs a backslash with the next byte and `escape.Unescape` drops a
///   backslash before `"`, so a field key cannot hold an odd run of backslashes before an
///   escaped character, nor a backslash before `"`.
struct Escaper {
    ctx: Ctx,
    class: &'static [u8; 256],
    backslashes: usize,
}

impl Escaper {
    fn new(ctx: Ctx) -> Self {
        Self {
            ctx,
            class: match ctx {
                Ctx::Measurement => &MEASUREMENT_CLASS,
                Ctx::Tag => &TAG_CLASS,
                Ctx::Field => &FIELD_CLASS,
            },
            backslashes: 0,
        }
    }

    fn push(&mut self, out: &mut Vec<u8>, text: &str) -> Result<(), &'static str> {
        let bytes = text.as_bytes();
        let mut run = self.backslashes;
        let mut copied = 0;
        let mut i = 0;
        loop {
            let plain_from = i;
            while i < bytes.len() && self.class[usize::from(bytes[i])] == PLAIN {
                i += 1;
            }
            if i > plain_from {
                run = 0;
            }
            let Some(&b) = bytes.get(i) else { break };
            i += 1;
            match self.class[usize::from(b)] {
                BACKSLASH => {
                    run += 1;
                    continue;
                }
                ESCAPE => match (self.ctx, run) {
                    (Ctx::Measurement, 1) => {}
                    (Ctx::Measurement, 2..) => {
                        return Err("backslashes before a comma or space in a measurement \
                                    make InfluxDB file the series and its fields apart");
                    }
                    (Ctx::Field, _) if run % 2 == 1 => {
                        return Err("an odd run of backslashes before a comma, space or \
                                    equals sign in a field key would escape it");
                    }
                    _ => {
                        out.extend_from_slice(&bytes[copied..i - 1]);
                        out.push(b'\\');
                        copied = i - 1;
                    }
                },
                QUOTE if run > 0 => {
                    return Err("a backslash before a double quote in a field key would be \
                                dropped");
                }
                QUOTE => {}
                _ => return Err("line protocol has no escape for a newline"),
            }
            run = 0;
        }
        out.extend_from_slice(&bytes[copied..]);
        self.backslashes = run;
        Ok(())
    }

    fn finish(&self) -> Result<(), &'static str> {
        if self.backslashes > 0 {
            Err(TRAILING_BACKSLASH)
        } else {
            Ok(())
        }
    }
}

/// Writes line protocol straight into the output buffer.
struct LpSink<'o> {
    out: &'o mut Vec<u8>,
    /// Where the current element (with its leading `,` or space) starts, for rollback.
    mark: usize,
    element: &'static str,
    esc: Escaper,
}

impl<'o> LpSink<'o> {
    fn new(out: &'o mut Vec<u8>) -> Self {
        let mark = out.len();
        Self {
            out,
            mark,
            element: "measurement",
            esc: Escaper::new(Ctx::Measurement),
        }
    }
}

fn element_name(part: Part<'_>) -> &'static str {
    match part {
        Part::Measurement => "measurement",
        Part::Tag(_) => "tag value",
        Part::Field => "field key",
    }
}

impl Sink for LpSink<'_> {
    fn begin(&mut self, part: Part<'_>) -> Result<(), SinkError> {
        self.mark = self.out.len();
        self.element = element_name(part);
        match part {
            Part::Measurement => self.esc = Escaper::new(Ctx::Measurement),
            Part::Tag(key) => {
                self.out.push(b',');
                let mut esc = Escaper::new(Ctx::Tag);
                esc.push(self.out, key)
                    .and_then(|()| esc.finish())
                    .map_err(|reason| SinkError {
                        element: "tag key",
                        reason,
                    })?;
                self.out.push(b'=');
                self.esc = Escaper::new(Ctx::Tag);
            }
            Part::Field => {
                self.out.push(b' ');
                self.esc = Escaper::new(Ctx::Field);
            }
        }
        Ok(())
    }

    fn push(&mut self, text: &str) -> Result<(), SinkError> {
        let element = self.element;
        self.esc
            .push(self.out, text)
            .map_err(|reason| SinkError { element, reason })
    }

    fn commit(&mut self, part: Part<'_>) -> Result<(), SinkError> {
        let element = element_name(part);
        if matches!(part, Part::Measurement) {
            let reason = match self.out.get(self.mark) {
                Some(b'#') => "a measurement starting with `#` would be read as a comment line",
                Some(b'\t' | b'\0') => {
                    "a tab or NUL at the start of a line is skipped as whitespace"
                }
                _ => "",
            };
            if !reason.is_empty() {
                return Err(SinkError { element, reason });
            }
        }
        self.esc
            .finish()
            .map_err(|reason| SinkError { element, reason })
    }

    fn rollback(&mut self) {
        self.out.truncate(self.mark);
    }
}

/// Collects the unescaped pieces for [`Applied`].
#[derive(Default)]
struct CollectSink {
    measurement: String,
    tags: Vec<(String, String)>,
    field: String,
    current: String,
}

impl Sink for CollectSink {
    fn begin(&mut self, _part: Part<'_>) -> Result<(), SinkError> {
        self.current.clear();
        Ok(())
    }

    fn push(&mut self, text: &str) -> Result<(), SinkError> {
        self.current.push_str(text);
        Ok(())
    }

    fn commit(&mut self, part: Part<'_>) -> Result<(), SinkError> {
        let value = std::mem::take(&mut self.current);
        match part {
            // What InfluxDB's `unescapeMeasurement` makes of it (see `Escaper`).
            Part::Measurement => {
                self.measurement = value.replace("\\,", ",").replace("\\ ", " ");
            }
            Part::Tag(key) => self.tags.push((key.to_owned(), value)),
            Part::Field => self.field = value,
        }
        Ok(())
    }

    fn rollback(&mut self) {
        self.current.clear();
    }
}
