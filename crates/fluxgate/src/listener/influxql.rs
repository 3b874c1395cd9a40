//! Which InfluxQL statements `query = "read_only"` lets through `/query`.
//!
//! The check is deliberately conservative, so that no way of writing a statement can slip
//! a write past it, at the price of refusing a few odd reads:
//! - the text is cut at **every** `;`, even one inside a string, identifier or comment: a
//!   cut InfluxDB would not make only yields more pieces, each of which must pass, so a
//!   second statement can never hide in what this check took for a string;
//! - each piece, after leading whitespace and comments (`-- ...` to the end of the line,
//!   `/* ... */`), must start with the keyword `SELECT` or `SHOW`, or be `CREATE DATABASE`:
//!   additive and idempotent, and what InfluxDB's own clients send before writing
//!   (aioinflux's README example, influxdb-python, Telegraf), so a drop-in endpoint must
//!   let it through; it still needs credentials the upstream accepts;
//! - a `SELECT` piece must not contain the word `INTO` anywhere (`SELECT ... INTO` writes),
//!   even inside a string or a quoted name.

/// Why a query was refused: the first keyword of the statement (never its text, which may
/// hold a password: `CREATE USER ... WITH PASSWORD '...'`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refused {
    pub(crate) keyword: String,
}

/// `Ok` when every statement of `q` only reads.
pub(crate) fn check_read_only(q: &str) -> Result<(), Refused> {
    for piece in q.split(';') {
        let body = skip_blank_and_comments(piece);
        if body.is_empty() {
            continue;
        }
        let keyword: String = body
            .chars()
            .take_while(|c| c.is_ascii_alphabetic())
            .collect::<String>()
            .to_ascii_uppercase();
        let ok = match keyword.as_str() {
            "SHOW" => true,
            "SELECT" => !has_word(body, "INTO"),
            "CREATE" => body[keyword.len()..]
                .split_whitespace()
                .next()
                .is_some_and(|w| w.eq_ignore_ascii_case("DATABASE")),
            _ => false,
        };
        if !ok {
            let keyword = if keyword == "SELECT" {
                "SELECT ... INTO".to_owned()
            } else if keyword.is_empty() {
                body.chars().next().map(String::from).unwrap_or_default()
            } else {
                keyword
            };
            return Err(Refused { keyword });
        }
    }
    Ok(())
}

fn skip_blank_and_comments(mut s: &str) -> &str {
    loop {
        s = s.trim_start();
        if let Some(rest) = s.strip_prefix("--") {
            s = rest.split_once('\n').map_or("", |(_, after)| after);
        } else if let Some(rest) = s.strip_prefix("/*") {
            s = rest.split_once("*/").map_or("", |(_, after)| after);
        } else {
            return s;
        }
    }
}

/// Whether `word` (upper case) appears in `s` as a whole word, case-insensitively.
fn has_word(s: &str, word: &str) -> bool {
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    s.split(|c: char| !is_word(c))
        .any(|w| w.eq_ignore_ascii_case(word))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(q: &str) -> String {
        check_read_only(q).unwrap_err().keyword
    }

    #[test]
    fn reads_pass() {
        for q in [
            "SELECT * FROM cpu",
            "select mean(value) from \"cpu\" where time > now() - 1h group by time(1m)",
            "SHOW DATABASES",
            "show measurements; SELECT 1 FROM m;",
            "  -- a comment\n  SELECT * FROM m",
            "/* why */ SHOW SERIES",
            "SELECT * FROM intolerance",
            "",
        ] {
            assert_eq!(check_read_only(q), Ok(()), "{q}");
        }
    }

    #[test]
    fn writes_and_admin_statements_are_refused() {
        assert_eq!(
            refused("CREATE USER evil WITH PASSWORD 'x' WITH ALL PRIVILEGES"),
            "CREATE"
        );
        assert_eq!(check_read_only("CREATE DATABASE telegraf"), Ok(()));
        assert_eq!(
            check_read_only("create database \"my db\" WITH DURATION 7d"),
            Ok(())
        );
        assert_eq!(refused("CREATE DATABASE x; DROP DATABASE y"), "DROP");
        assert_eq!(
            refused("CREATE RETENTION POLICY rp ON db DURATION 1d REPLICATION 1"),
            "CREATE"
        );
        assert_eq!(refused("DROP DATABASE x"), "DROP");
        assert_eq!(refused("SHOW DATABASES; DROP DATABASE x"), "DROP");
        assert_eq!(refused("SELECT * INTO other FROM m"), "SELECT ... INTO");
        assert_eq!(
            refused("select * into \"db\"..\"m\" from m"),
            "SELECT ... INTO"
        );
        assert_eq!(refused("GRANT ALL TO evil"), "GRANT");
        assert_eq!(refused("DELETE FROM m"), "DELETE");
        assert_eq!(refused("KILL QUERY 1"), "KILL");
        assert_eq!(refused("EXPLAIN ANALYZE SELECT * FROM m"), "EXPLAIN");
        // Comments do not hide what follows them.
        assert_eq!(refused("/* SELECT */ DROP MEASUREMENT m"), "DROP");
        assert_eq!(refused("-- SELECT\nDROP SERIES FROM m"), "DROP");
        // A ';' in a string still cuts: what follows must pass on its own.
        assert_eq!(
            refused("SELECT * FROM m WHERE a = 'x;DROP DATABASE y'"),
            "DROP"
        );
        assert_eq!(
            refused("SELECT * FROM m WHERE a = '--'; DROP DATABASE y"),
            "DROP"
        );
        assert_eq!(refused("(SELECT 1)"), "(");
    }
}
