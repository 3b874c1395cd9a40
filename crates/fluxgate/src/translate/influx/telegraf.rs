//! `sanitize = "telegraf"`: paths exactly as Telegraf's graphite serializer
//! (`plugins/serializers/graphite/graphite.go`) writes them, so that series moved from a
//! Telegraf → carbon pipeline behind fluxgate keep the whisper files they already have.
//!
//! Telegraf builds the whole path first and then cleans it:
//!
//! - template mode: each template element in turn (`measurement`, `field` as a placeholder,
//!   `tags` as a placeholder for the remaining tags' values sorted by key, any other word the
//!   value of that tag, or nothing when the point lacks it), tag values with `.` made `_`,
//!   joined with `.`, after `prefix.`; the field is put in its place (a field `value`
//!   removes the placeholder and one dot beside it); then the strict clean-up below;
//! - tag mode (`tag_support`): `[prefix<sep>]measurement[<sep>field]` cleaned strictly, then
//!   `;k=v` per tag sorted as strings, each cleaned strictly as `k=v` (`tag_sanitize_mode =
//!   "strict"`) or as Telegraf's `compatible` mode does (key and value each by their own
//!   character set, leading `~` dropped from the value); the tag key `name` becomes `_name`.
//!
//! The strict clean-up: `/`, `@` and `*` become `-`; `\` is dropped and `..` becomes `.`
//! (one left-to-right pass, as Go's `strings.Replacer`); then every character the strict
//! expression matches (by default `[^a-zA-Z0-9-:._=\p{L}]`, or `strict_sanitize_regex`)
//! becomes `_`. Unlike the `encode` default, this loses information (`a.b` and `a_b` become
//! one series) and may leave empty segments (`.cpu.idle` when a template's first tag is
//! missing): Telegraf's paths, byte for byte.

use std::collections::BTreeMap;

use line_protocol::{FieldValue, ParsedLine};
use regex::{NoExpand, Regex};
use serde::{Deserialize, Serialize};

use super::{BoolMode, FieldError, SkipReason, Written, DEFAULT_TEMPLATE};

/// How paths are made safe for Graphite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sanitize {
    /// The metric-name encoder per segment: lossless and reversible.
    #[default]
    Encode,
    /// Telegraf's graphite serializer's character replacement.
    Telegraf,
}

/// Telegraf's `graphite_tag_sanitize_mode` (tag mode only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TagSanitizeMode {
    #[default]
    Strict,
    Compatible,
}

/// Telegraf's default `graphite_strict_sanitize_regex` (Go's `0-9-:` is written `0-9\-:`).
pub const DEFAULT_STRICT_REGEX: &str = r"[^a-zA-Z0-9\-:._=\p{L}]";

#[derive(Debug, Clone)]
pub(super) struct TelegrafNames {
    strict: Regex,
    compatible_name: Regex,
    compatible_value: Regex,
    mode: TagSanitizeMode,
    prefix: String,
    separator: String,
    bool_mode: BoolMode,
}

impl TelegrafNames {
    #[cfg(test)]
    fn new(strict_regex: &str, mode: TagSanitizeMode) -> Result<Self, String> {
        Self::with(strict_regex, mode, "", ".", BoolMode::Number)
    }

    /// With the output's prefix, tag-mode separator and boolean policy.
    pub(super) fn with(
        strict_regex: &str,
        mode: TagSanitizeMode,
        prefix: &str,
        separator: &str,
        bool_mode: BoolMode,
    ) -> Result<Self, String> {
        let strict = if strict_regex.is_empty() {
            DEFAULT_STRICT_REGEX
        } else {
            strict_regex
        };
        Ok(Self {
            strict: Regex::new(strict)
                .map_err(|e| format!("strict_sanitize_regex {strict_regex:?}: {e}"))?,
            compatible_name: Regex::new(r#"[^ "-:<>-\]_a-~\p{L}]"#).expect("a valid regex"),
            compatible_value: Regex::new(r"[^ -:<-~\p{L}]").expect("a valid regex"),
            mode,
            prefix: prefix.to_owned(),
            separator: separator.to_owned(),
            bool_mode,
        })
    }

    /// Telegraf's `strictSanitize`.
    pub(super) fn strict(&self, value: &str) -> String {
        let mut s = String::with_capacity(value.len());
        let mut chars = value.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '/' | '@' | '*' => s.push('-'),
                '\\' => {}
                '.' if chars.peek() == Some(&'.') => {
                    chars.next();
                    s.push('.');
                }
                c => s.push(c),
            }
        }
        match self.strict.replace_all(&s, NoExpand("_")) {
            std::borrow::Cow::Borrowed(_) => s,
            std::borrow::Cow::Owned(o) => o,
        }
    }

    fn compatible(&self, name: &str, value: &str) -> String {
        let name = self.compatible_name.replace_all(name, NoExpand("_"));
        let value = self.compatible_value.replace_all(value, NoExpand("_"));
        format!("{name}={}", value.trim_start_matches('~'))
    }

    /// All lines of one point, as Telegraf's `Serialize` writes them.
    pub(super) fn write_point(
        &self,
        point: &ParsedLine<'_>,
        timestamp_ns: i64,
        template: Option<&str>,
        out: &mut Vec<u8>,
    ) -> Written {
        let (prefix, separator, bool_mode) = (
            self.prefix.as_str(),
            self.separator.as_str(),
            self.bool_mode,
        );
        let mut written = Written::default();
        // Go's integer division truncates toward zero.
        let seconds = timestamp_ns / 1_000_000_000;
        let measurement = point.measurement.as_str().into_owned();
        let mut tags: BTreeMap<String, String> = BTreeMap::new();
        for (k, v) in &point.tags {
            tags.insert(k.as_str().into_owned(), v.as_str().into_owned());
        }
        let bucket = template.map(|t| bucket_name(&measurement, &tags, t, prefix));
        if bucket.as_deref() == Some("") {
            for _ in &point.fields {
                written.skipped.bump(SkipReason::EmptyPath);
            }
            written.error = Some(FieldError::EmptyPath {
                measurement,
                template: template.unwrap_or_default().to_owned(),
            });
            return written;
        }
        for (i, (key, value)) in point.fields.iter().enumerate() {
            if point.fields[i + 1..].iter().any(|(k, _)| k == key) {
                written.skipped.bump(SkipReason::DuplicateField);
                continue;
            }
            let text = match *value {
                FieldValue::String(_) => {
                    written.skipped.bump(SkipReason::String);
                    continue;
                }
                FieldValue::Bool(_) if bool_mode == BoolMode::Skip => {
                    written.skipped.bump(SkipReason::Boolean);
                    continue;
                }
                FieldValue::Bool(b) => (if b { "1" } else { "0" }).to_owned(),
                FieldValue::I64(v) => v.to_string(),
                FieldValue::U64(v) => v.to_string(),
                FieldValue::F64(v) if !v.is_finite() => {
                    written.skipped.bump(SkipReason::NonFinite);
                    continue;
                }
                FieldValue::F64(v) => {
                    let mut b = Vec::new();
                    graphite_plaintext::encode_value(v, &mut b);
                    String::from_utf8_lossy(&b).into_owned()
                }
            };
            let field = key.as_str();
            let path = match &bucket {
                Some(bucket) => self.strict(&insert_field(bucket, &field)),
                None => self.tagged_name(&measurement, &tags, prefix, separator, &field),
            };
            out.extend_from_slice(path.as_bytes());
            out.push(b' ');
            out.extend_from_slice(text.as_bytes());
            out.push(b' ');
            out.extend_from_slice(seconds.to_string().as_bytes());
            out.push(b'\n');
            written.lines += 1;
        }
        written
    }

    /// Telegraf's `serializeBucketNameWithTags`.
    fn tagged_name(
        &self,
        measurement: &str,
        tags: &BTreeMap<String, String>,
        prefix: &str,
        separator: &str,
        field: &str,
    ) -> String {
        let mut pairs: Vec<String> = tags
            .iter()
            .map(|(k, v)| {
                let k = if k == "name" { "_name" } else { k.as_str() };
                match self.mode {
                    TagSanitizeMode::Compatible => self.compatible(k, v),
                    TagSanitizeMode::Strict => self.strict(&format!("{k}={v}")),
                }
            })
            .collect();
        pairs.sort();
        let mut out = String::new();
        if !prefix.is_empty() {
            out.push_str(prefix);
            out.push_str(separator);
        }
        out.push_str(measurement);
        if field != "value" {
            out.push_str(separator);
            out.push_str(field);
        }
        let mut out = self.strict(&out);
        if !pairs.is_empty() {
            out.push(';');
            out.push_str(&pairs.join(";"));
        }
        out
    }
}

/// Telegraf's `SerializeBucketName`: the path with `FIELDNAME` where the field goes.
pub(super) fn bucket_name(
    measurement: &str,
    tags: &BTreeMap<String, String>,
    template: &str,
    prefix: &str,
) -> String {
    let template = if template.is_empty() {
        DEFAULT_TEMPLATE
    } else {
        template
    };
    let mut rest = tags.clone();
    let mut out: Vec<String> = Vec::new();
    for part in template.split('.') {
        match part {
            "measurement" => out.push(measurement.to_owned()),
            "tags" => out.push("TAGS".to_owned()),
            "field" => out.push("FIELDNAME".to_owned()),
            tag => {
                if let Some(v) = rest.remove(tag) {
                    out.push(v.replace('.', "_"));
                }
            }
        }
    }
    if let Some(slot) = out.iter_mut().find(|p| *p == "TAGS") {
        *slot = rest
            .values()
            .map(|v| v.replace('.', "_"))
            .collect::<Vec<_>>()
            .join(".");
    }
    if out.is_empty() {
        return String::new();
    }
    if prefix.is_empty() {
        out.join(".")
    } else {
        format!("{prefix}.{}", out.join("."))
    }
}

/// Telegraf's `InsertField`.
pub(super) fn insert_field(bucket: &str, field: &str) -> String {
    if field != "value" {
        return bucket.replacen("FIELDNAME", field, 1);
    }
    // strings.NewReplacer(".FIELDNAME", "", "FIELDNAME.", ""): one pass, left to right.
    let mut out = String::with_capacity(bucket.len());
    let mut rest = bucket;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix(".FIELDNAME") {
            rest = r;
        } else if let Some(r) = rest.strip_prefix("FIELDNAME.") {
            rest = r;
        } else {
            let c = rest.chars().next().expect("not empty");
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    //! Telegraf's serializer tests (`plugins/serializers/graphite/graphite_test.go`: the
    //! `TestClean*` tables, spaces, prefix, custom regex, templates), expected lines exactly
    //! as Telegraf writes them, input written as the line protocol that makes Telegraf's
    //! metric.

    use line_protocol::parse_line;

    use super::super::{InfluxToGraphite, InfluxToGraphiteConfig};
    use super::*;

    const T: i64 = 1_234_567_890_000_000_000;

    fn conv(edit: impl FnOnce(&mut InfluxToGraphiteConfig)) -> InfluxToGraphite {
        let mut c = InfluxToGraphiteConfig {
            sanitize: Sanitize::Telegraf,
            ..InfluxToGraphiteConfig::default()
        };
        edit(&mut c);
        InfluxToGraphite::new(&c).expect("valid")
    }

    fn out(conv: &InfluxToGraphite, line: &str) -> String {
        let point = parse_line(line).expect("valid line protocol");
        let mut out = Vec::new();
        let _ = conv.writer().write_point(&point, T, &mut out);
        String::from_utf8(out).unwrap()
    }

    /// (line protocol, template mode, tag mode strict, tag mode compatible)
    const CLEAN: &[(&str, &str, &str, &str)] = &[
        (
            "cpu,host=localhost usage_busy=8.5",
            "localhost.cpu.usage_busy 8.5 1234567890\n",
            "cpu.usage_busy;host=localhost 8.5 1234567890\n",
            "cpu.usage_busy;host=localhost 8.5 1234567890\n",
        ),
        (
            r"cpu,host=localhost,label.dot\ and\ space=value\ with.dot usage_busy=8.5",
            "localhost.value_with_dot.cpu.usage_busy 8.5 1234567890\n",
            "cpu.usage_busy;host=localhost;label.dot_and_space=value_with.dot 8.5 1234567890\n",
            "cpu.usage_busy;host=localhost;label.dot and space=value with.dot 8.5 1234567890\n",
        ),
        (
            r#"system,host=localhost uptime_format="20 days, 23:26""#,
            "",
            "",
            "",
        ),
        (
            "cpu,host=localhost,tag=-_:\\= usage_busy=10",
            "localhost.-_:=.cpu.usage_busy 10 1234567890\n",
            "cpu.usage_busy;host=localhost;tag=-_:= 10 1234567890\n",
            "cpu.usage_busy;host=localhost;tag=-_:= 10 1234567890\n",
        ),
        (
            "cpu,host=localhost,tag=/@* usage_busy=10",
            "localhost.---.cpu.usage_busy 10 1234567890\n",
            "cpu.usage_busy;host=localhost;tag=--- 10 1234567890\n",
            "cpu.usage_busy;host=localhost;tag=/@* 10 1234567890\n",
        ),
        (
            r"cpu,host=localhost,tag=\no\ slash usage_busy=10",
            "localhost.no_slash.cpu.usage_busy 10 1234567890\n",
            "cpu.usage_busy;host=localhost;tag=no_slash 10 1234567890\n",
            "cpu.usage_busy;host=localhost;tag=\\no slash 10 1234567890\n",
        ),
        (
            "cpu,host=localhost value=10",
            "localhost.cpu 10 1234567890\n",
            "cpu;host=localhost 10 1234567890\n",
            "cpu;host=localhost 10 1234567890\n",
        ),
        (
            "cpu,host=localhost,tag=μnicodε_letters value=10",
            "localhost.μnicodε_letters.cpu 10 1234567890\n",
            "cpu;host=localhost;tag=μnicodε_letters 10 1234567890\n",
            "cpu;host=localhost;tag=μnicodε_letters 10 1234567890\n",
        ),
        (
            "cpu,host=localhost,tag=“☢” value=10",
            "localhost.___.cpu 10 1234567890\n",
            "cpu;host=localhost;tag=___ 10 1234567890\n",
            "cpu;host=localhost;tag=___ 10 1234567890\n",
        ),
    ];

    #[test]
    fn telegraf_clean_tables() {
        let template = conv(|_| {});
        let strict = conv(|c| c.tag_support = true);
        let compatible = conv(|c| {
            c.tag_support = true;
            c.tag_sanitize_mode = TagSanitizeMode::Compatible;
        });
        for (line, t, s, c) in CLEAN {
            assert_eq!(out(&template, line), *t, "template: {line}");
            assert_eq!(out(&strict, line), *s, "strict: {line}");
            assert_eq!(out(&compatible, line), *c, "compatible: {line}");
        }
    }

    #[test]
    fn newlines_in_tags() {
        // "Newline in tags": a tag value with newlines, which line protocol cannot carry, so
        // the path builder is called directly.
        let names = TelegrafNames::new("", TagSanitizeMode::Strict).unwrap();
        let mut tags = BTreeMap::new();
        tags.insert("host".to_owned(), "localhost".to_owned());
        tags.insert("label".to_owned(), "some\nthing\nwith\nnewline".to_owned());
        let bucket = bucket_name("cpu", &tags, DEFAULT_TEMPLATE, "");
        assert_eq!(
            names.strict(&insert_field(&bucket, "usage_busy")),
            "localhost.some_thing_with_newline.cpu.usage_busy"
        );
        assert_eq!(
            names.tagged_name("cpu", &tags, "", ".", "usage_busy"),
            "cpu.usage_busy;host=localhost;label=some_thing_with_newline"
        );
        let compatible = TelegrafNames::new("", TagSanitizeMode::Compatible).unwrap();
        assert_eq!(
            compatible.tagged_name("cpu", &tags, "", ".", "usage_busy"),
            "cpu.usage_busy;host=localhost;label=some_thing_with_newline"
        );
    }

    const DEFAULT_TAGS: &str = "cpu,host=localhost,cpu=cpu0,datacenter=us-west-2";

    #[test]
    fn spaces_prefix_regex_and_templates() {
        // TestSerializeFieldWithSpaces / TagWithSpaces (+ WithTagSupport).
        let c = conv(|_| {});
        assert_eq!(
            out(&c, &format!(r"{DEFAULT_TAGS} field\ with\ spaces=91.5")),
            "localhost.cpu0.us-west-2.cpu.field_with_spaces 91.5 1234567890\n"
        );
        assert_eq!(
            out(
                &c,
                r"cpu,host=localhost,cpu=cpu\ 0,datacenter=us-west-2 field_with_spaces=91.5"
            ),
            "localhost.cpu_0.us-west-2.cpu.field_with_spaces 91.5 1234567890\n"
        );
        let tagged = conv(|c| c.tag_support = true);
        assert_eq!(
            out(
                &tagged,
                &format!(r"{DEFAULT_TAGS} field\ with\ spaces=91.5")
            ),
            "cpu.field_with_spaces;cpu=cpu0;datacenter=us-west-2;host=localhost 91.5 1234567890\n"
        );
        // TestSerializeMetricPrefix (+ WithTagSupport): the prefix is cleaned with the rest.
        let prefixed = conv(|c| c.prefix = "prefix".into());
        assert_eq!(
            out(&prefixed, &format!("{DEFAULT_TAGS} usage_idle=91.5")),
            "prefix.localhost.cpu0.us-west-2.cpu.usage_idle 91.5 1234567890\n"
        );
        let prefixed_tags = conv(|c| {
            c.prefix = "prefix".into();
            c.tag_support = true;
        });
        assert_eq!(
            out(&prefixed_tags, &format!("{DEFAULT_TAGS} usage_idle=91.5")),
            "prefix.cpu.usage_idle;cpu=cpu0;datacenter=us-west-2;host=localhost 91.5 1234567890\n"
        );
        // TestSerializeCustomRegex.
        let custom = conv(|c| c.strict_sanitize_regex = r"[^a-zA-Z0-9\-:._=|\p{L}]".into());
        assert_eq!(
            out(
                &custom,
                "cpu,host=localhost,cpu=cpu0,datacenter=|us-west-2| value=91.5"
            ),
            "localhost.cpu0.|us-west-2|.cpu 91.5 1234567890\n"
        );
        // TestTemplate1..6 (SerializeBucketName + InsertField).
        for (template, expected) in [
            (
                "tags.measurement.field",
                "cpu0.us-west-2.localhost.cpu.usage_idle",
            ),
            ("host.measurement.field", "localhost.cpu.usage_idle"),
            ("host.tags.field", "localhost.cpu0.us-west-2.usage_idle"),
            ("host.tags.measurement", "localhost.cpu0.us-west-2.cpu"),
            (
                "foo.host.cpu.bar.tags.measurement.field",
                "localhost.cpu0.us-west-2.cpu.usage_idle",
            ),
        ] {
            let c = conv(|c| c.template = template.into());
            assert_eq!(
                out(&c, &format!("{DEFAULT_TAGS} usage_idle=91.5")),
                format!("{expected} 91.5 1234567890\n"),
                "{template}"
            );
        }
        // TestSerializeValueField3 / 5: `value` at the start and the end of the template.
        let c = conv(|c| c.template = "field.host.tags.measurement".into());
        assert_eq!(
            out(&c, &format!("{DEFAULT_TAGS} value=91.5")),
            "localhost.cpu0.us-west-2.cpu 91.5 1234567890\n"
        );
        let c = conv(|c| c.template = "host.tags.measurement.field".into());
        assert_eq!(
            out(&c, "cpu,host=localhost value=91.5,usage=1i"),
            "localhost.cpu 91.5 1234567890\nlocalhost.cpu.usage 1 1234567890\n"
        );
        // A missing first tag leaves Telegraf's empty leading segment.
        assert_eq!(
            out(&conv(|_| {}), "mem free=1i"),
            ".mem.free 1 1234567890\n"
        );
    }

    #[test]
    fn bad_regex_is_refused() {
        let e = InfluxToGraphite::new(&InfluxToGraphiteConfig {
            sanitize: Sanitize::Telegraf,
            strict_sanitize_regex: "[".into(),
            ..InfluxToGraphiteConfig::default()
        })
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("strict_sanitize_regex \"[\""), "{e}");
    }
}
