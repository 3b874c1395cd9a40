//! `fluxgate import`: an existing relay's configuration translated into a fluxgate
//! `config.toml` that does the same.
//!
//! Each source format has its own module with a parser of that format, not a pattern match
//! over lines: [`c_relay`] (carbon-c-relay's configuration grammar, `include` followed),
//! [`carbon`] (carbon's `carbon.conf` ini sections, `relay-rules.conf`,
//! `aggregation-rules.conf`) and [`telegraf`] (a Telegraf TOML file's Graphite listeners and
//! InfluxDB / Graphite outputs). Each turns what it read into a commented config text and a
//! list of [`Problem`]s: every statement that changes what a relay does and that fluxgate
//! cannot do the same way, with the file, the line and why. Settings that have no bearing on
//! where data goes (log files, PID files, a cache's own storage tuning) are named in comments
//! but are not problems.
//!
//! The command prints the config on stdout and the problems on stderr, and exits non-zero when
//! there is any problem unless `--partial` is given: an operator must never believe a
//! translation is faithful when it is not.

use std::fmt::{self, Write as _};
use std::path::Path;

pub mod c_relay;
pub mod carbon;
pub mod telegraf;

/// A statement that was not imported, or not imported exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: String,
    /// 1-based.
    pub line: usize,
    /// The statement, shortened.
    pub statement: String,
    pub reason: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: `{}` not imported: {}",
            self.file, self.line, self.statement, self.reason
        )
    }
}

/// The result of an import: the config text and what could not be carried over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    pub config: String,
    pub problems: Vec<Problem>,
}

/// A source that cannot be imported at all: unreadable, or not valid in its own format (the
/// daemon itself would refuse it).
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{file}:{line}: {message}")]
    Syntax {
        file: String,
        line: usize,
        message: String,
    },
}

impl ImportError {
    pub(crate) fn syntax(file: &str, line: usize, message: impl Into<String>) -> Self {
        Self::Syntax {
            file: file.to_owned(),
            line,
            message: message.into(),
        }
    }
}

pub(crate) fn read(path: &Path) -> Result<String, ImportError> {
    std::fs::read_to_string(path).map_err(|source| ImportError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// Shortens a statement for a message: whitespace runs become one space, at most 100 chars.
pub(crate) fn shorten(text: &str) -> String {
    let joined = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if joined.chars().count() <= 100 {
        return joined;
    }
    let cut: String = joined.chars().take(97).collect();
    cut + "..."
}

/// A TOML basic or literal string for `s`, as the `toml` crate writes it, with `${` written
/// `$${` so that fluxgate's environment interpolation leaves it as it is (carbon-c-relay's
/// `\1` becomes `${1}` in a replacement; a regex may hold `${` too).
pub(crate) fn quote(s: &str) -> String {
    quote_env(&s.replace("${", "$${"))
}

/// [`quote`] keeping `${VAR}` as an environment reference (Telegraf's own syntax, which
/// fluxgate reads the same way).
pub(crate) fn quote_env(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// A TOML array of strings.
pub(crate) fn quote_all<S: AsRef<str>>(items: &[S]) -> String {
    let inner: Vec<String> = items.iter().map(|s| quote(s.as_ref())).collect();
    format!("[{}]", inner.join(", "))
}

/// [`quote_all`] keeping environment references.
pub(crate) fn quote_all_env<S: AsRef<str>>(items: &[S]) -> String {
    let inner: Vec<String> = items.iter().map(|s| quote_env(s.as_ref())).collect();
    format!("[{}]", inner.join(", "))
}

/// The config text being written: sections, keys and comments, in order.
#[derive(Debug, Default)]
pub(crate) struct Doc {
    out: String,
    /// Values keep `${VAR}` environment references (Telegraf).
    env: bool,
}

impl Doc {
    /// A document whose values keep `${VAR}` references for fluxgate to fill in.
    pub(crate) fn keeping_env() -> Self {
        Doc {
            out: String::new(),
            env: true,
        }
    }

    /// A string array in this document's quoting.
    pub(crate) fn list<S: AsRef<str>>(&self, items: &[S]) -> String {
        if self.env {
            quote_all_env(items)
        } else {
            quote_all(items)
        }
    }

    /// `# text` lines (a multi-line text becomes several comment lines).
    pub(crate) fn comment(&mut self, text: &str) {
        for line in text.lines() {
            if line.is_empty() {
                self.out.push_str("#\n");
            } else {
                let _ = writeln!(self.out, "# {line}");
            }
        }
    }

    pub(crate) fn blank(&mut self) {
        if !self.out.is_empty() && !self.out.ends_with("\n\n") {
            self.out.push('\n');
        }
    }

    /// `[header]`, after a blank line.
    pub(crate) fn table(&mut self, header: &str) {
        let _ = writeln!(self.out, "[{header}]");
    }

    /// `[[header]]`.
    pub(crate) fn array_table(&mut self, header: &str) {
        let _ = writeln!(self.out, "[[{header}]]");
    }

    /// `key = value` with `value` already TOML, and an optional trailing comment.
    pub(crate) fn raw(&mut self, key: &str, value: &str, comment: Option<&str>) {
        match comment {
            Some(c) => {
                let _ = writeln!(self.out, "{key} = {value}  # {c}");
            }
            None => {
                let _ = writeln!(self.out, "{key} = {value}");
            }
        }
    }

    pub(crate) fn string(&mut self, key: &str, value: &str, comment: Option<&str>) {
        let v = if self.env {
            quote_env(value)
        } else {
            quote(value)
        };
        self.raw(key, &v, comment);
    }

    /// The problems of an import as a comment block.
    pub(crate) fn problems(&mut self, problems: &[Problem]) {
        if problems.is_empty() {
            return;
        }
        self.blank();
        self.comment(&format!(
            "NOT IMPORTED: {} statement(s) fluxgate cannot do the same way:",
            problems.len()
        ));
        for p in problems {
            self.comment(&format!("  {p}"));
        }
    }

    /// An inline note where a statement would have gone.
    pub(crate) fn not_imported(&mut self, p: &Problem) {
        self.comment(&format!(
            "NOT IMPORTED ({}:{}): {}\n  because {}",
            p.file, p.line, p.statement, p.reason
        ));
    }

    pub(crate) fn finish(self) -> String {
        let mut s = self.out;
        while s.ends_with("\n\n") {
            s.pop();
        }
        s
    }
}

/// Matches `name` against a shell glob with `*` and `?` (for `include` and Telegraf's
/// filters), character by character.
pub(crate) fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = name.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some('?') => {
                pi += 1;
                ti += 1;
            }
            Some(&c) if c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    star = Some((sp, st + 1));
                    pi = sp + 1;
                    ti = st + 1;
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("*.conf", "a.conf"));
        assert!(glob_match("a?c", "abc"));
        assert!(!glob_match("*.conf", "a.conf.bak"));
        assert!(glob_match("*", ""));
    }

    #[test]
    fn quoting_is_toml() {
        assert_eq!(quote("a"), "\"a\"");
        let back: toml::Value = toml::from_str(&format!("x = {}", quote("^a\\.b\"'"))).unwrap();
        assert_eq!(back["x"].as_str(), Some("^a\\.b\"'"));
        assert_eq!(quote_all(&["a", "b"]), "[\"a\", \"b\"]");
        assert_eq!(quote("a${1}"), "\"a$${1}\"");
        assert_eq!(quote_env("${TOKEN}"), "\"${TOKEN}\"");
    }

    #[test]
    fn shortening() {
        assert_eq!(shorten("match  *\n  send to a"), "match * send to a");
        assert_eq!(shorten(&"x ".repeat(80)).chars().count(), 100);
    }
}
