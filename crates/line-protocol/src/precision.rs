//! Timestamp precision: the `precision` query parameter of both write APIs.

use std::fmt;
use std::str::FromStr;

use crate::error::{MAX_NANOS, MIN_NANOS};
use crate::Error;

/// The unit of a line's timestamp.
///
/// Which spellings each server accepts (checked against `influxd` 1.6.7 and the 2.x API):
///
/// | precision    | InfluxDB 1.x `/write` | InfluxDB 2.x `/api/v2/write` | accepted here |
/// |--------------|-----------------------|------------------------------|---------------|
/// | nanoseconds  | `n`, `ns`, absent     | `ns`, absent                 | `n`, `ns`     |
/// | microseconds | `u`                   | `us`                         | `u`, `us`, `µ`, `μ` |
/// | milliseconds | `ms`                  | `ms`                         | `ms`          |
/// | seconds      | `s`                   | `s`                          | `s`           |
/// | minutes      | `m`                   | —                            | `m`           |
/// | hours        | `h`                   | —                            | `h`           |
///
/// InfluxDB 1.x does not reject an unknown precision: it silently reads the timestamps as
/// nanoseconds, so `precision=us` (a 2.x spelling) or `µ` sent to a 1.x server stores points
/// 1000 times too early. That is why [`Precision::as_v1_str`] and [`Precision::as_v2_str`] exist
/// and an upstream is always sent its own spelling. 2.x has no minutes or hours: timestamps in
/// those are converted to seconds for a v2 upstream ([`Precision::for_v2`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub enum Precision {
    /// Hours (`h`, 1.x only).
    Hours,
    /// Minutes (`m`, 1.x only).
    Minutes,
    /// Seconds (`s`).
    Seconds,
    /// Milliseconds (`ms`).
    Milliseconds,
    /// Microseconds (`u` in 1.x, `us` in 2.x).
    Microseconds,
    /// Nanoseconds (`n`/`ns`), what both APIs assume when the parameter is absent.
    #[default]
    Nanoseconds,
}

impl Precision {
    /// Every precision, coarsest first.
    pub const ALL: [Precision; 6] = [
        Precision::Hours,
        Precision::Minutes,
        Precision::Seconds,
        Precision::Milliseconds,
        Precision::Microseconds,
        Precision::Nanoseconds,
    ];

    /// Parses any spelling either API uses; `None` for an absent or empty parameter is the
    /// caller's business (both APIs then mean nanoseconds).
    pub fn parse(value: &str) -> Result<Precision, Error> {
        Ok(match value {
            "n" | "ns" => Precision::Nanoseconds,
            "u" | "us" | "\u{b5}" | "\u{3bc}" => Precision::Microseconds,
            "ms" => Precision::Milliseconds,
            "s" => Precision::Seconds,
            "m" => Precision::Minutes,
            "h" => Precision::Hours,
            other => {
                let mut end = other.len().min(32);
                while !other.is_char_boundary(end) {
                    end -= 1;
                }
                return Err(Error::UnknownPrecision {
                    value: other[..end].to_owned(),
                });
            }
        })
    }

    /// Nanoseconds per unit.
    pub const fn nanos_per_unit(self) -> i64 {
        match self {
            Precision::Hours => 3_600_000_000_000,
            Precision::Minutes => 60_000_000_000,
            Precision::Seconds => 1_000_000_000,
            Precision::Milliseconds => 1_000_000,
            Precision::Microseconds => 1_000,
            Precision::Nanoseconds => 1,
        }
    }

    /// The timestamp in nanoseconds, or `None` when it falls outside InfluxDB's time range
    /// (`-9223372036854775806 ..= 9223372036854775806` ns, models.MinNanoTime/MaxNanoTime),
    /// which is exactly when InfluxDB answers `time outside range`.
    pub const fn checked_nanos(self, timestamp: i64) -> Option<i64> {
        match timestamp.checked_mul(self.nanos_per_unit()) {
            Some(ns) if ns >= MIN_NANOS && ns <= MAX_NANOS => Some(ns),
            _ => None,
        }
    }

    /// [`Precision::checked_nanos`] as a `Result` carrying the offending timestamp.
    pub fn to_nanos(self, timestamp: i64) -> Result<i64, Error> {
        self.checked_nanos(timestamp).ok_or(Error::TimeOutOfRange {
            timestamp,
            precision: self,
        })
    }

    /// Re-expresses `timestamp` (in `self`) in `target`, truncating toward negative infinity
    /// when `target` is coarser, as InfluxDB does when it renders a time in a coarser unit.
    /// Fails when the result leaves InfluxDB's time range.
    pub fn convert(self, timestamp: i64, target: Precision) -> Result<i64, Error> {
        let err = || Error::TimeOutOfRange {
            timestamp,
            precision: self,
        };
        let ns = self.to_nanos(timestamp)?;
        let (from, to) = (self.nanos_per_unit(), target.nanos_per_unit());
        if from >= to {
            // Finer target: exact, and in range because the nanoseconds are.
            timestamp.checked_mul(from / to).ok_or_else(err)
        } else {
            Ok(ns.div_euclid(to))
        }
    }

    /// The spelling to send to an InfluxDB 1.x `/write`: `n u ms s m h`.
    pub const fn as_v1_str(self) -> &'static str {
        match self {
            Precision::Hours => "h",
            Precision::Minutes => "m",
            Precision::Seconds => "s",
            Precision::Milliseconds => "ms",
            Precision::Microseconds => "u",
            Precision::Nanoseconds => "n",
        }
    }

    /// The precision to use toward an InfluxDB 2.x/3 `/api/v2/write`: the same, except minutes
    /// and hours, which that API lacks, become seconds (convert timestamps with
    /// [`Precision::convert`]).
    pub const fn for_v2(self) -> Precision {
        match self {
            Precision::Hours | Precision::Minutes => Precision::Seconds,
            other => other,
        }
    }

    /// The spelling to send to an InfluxDB 2.x/3 `/api/v2/write`: `ns us ms s`; minutes and hours
    /// answer `s`, so convert their timestamps first ([`Precision::for_v2`]).
    pub const fn as_v2_str(self) -> &'static str {
        match self.for_v2() {
            Precision::Milliseconds => "ms",
            Precision::Microseconds => "us",
            Precision::Nanoseconds => "ns",
            _ => "s",
        }
    }
}

impl FromStr for Precision {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Precision::parse(s)
    }
}

/// Displays the v2 spelling for `ns us ms s` and the 1.x one for `m h`, i.e. the shortest
/// unambiguous name.
impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Precision::Hours => "h",
            Precision::Minutes => "m",
            other => other.as_v2_str(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling() {
        for (s, p) in [
            ("n", Precision::Nanoseconds),
            ("ns", Precision::Nanoseconds),
            ("u", Precision::Microseconds),
            ("us", Precision::Microseconds),
            ("µ", Precision::Microseconds),
            ("μ", Precision::Microseconds),
            ("ms", Precision::Milliseconds),
            ("s", Precision::Seconds),
            ("m", Precision::Minutes),
            ("h", Precision::Hours),
        ] {
            assert_eq!(s.parse::<Precision>().unwrap(), p, "{s}");
        }
        for bad in ["", "NS", "x", "sec", "mu"] {
            assert!(Precision::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Precision::parse("nope").unwrap_err().to_string(),
            "invalid precision \"nope\" (use n, ns, u, us, µ, ms, s, m or h)"
        );
    }

    #[test]
    fn upstream_spellings() {
        let v1: Vec<_> = Precision::ALL.iter().map(|p| p.as_v1_str()).collect();
        assert_eq!(v1, ["h", "m", "s", "ms", "u", "n"]);
        let v2: Vec<_> = Precision::ALL.iter().map(|p| p.as_v2_str()).collect();
        assert_eq!(v2, ["s", "s", "s", "ms", "us", "ns"]);
        assert_eq!(Precision::Hours.for_v2(), Precision::Seconds);
        assert_eq!(Precision::Microseconds.for_v2(), Precision::Microseconds);
    }

    #[test]
    fn nanos_and_range() {
        assert_eq!(
            Precision::Seconds.to_nanos(1_700_000_000).unwrap(),
            1_700_000_000_000_000_000
        );
        assert_eq!(
            Precision::Hours.to_nanos(2_562_047).unwrap(),
            9_223_369_200_000_000_000
        );
        // influxd 1.6.7: `precision=h` with 2562048 is "time outside range".
        assert!(Precision::Hours.to_nanos(2_562_048).is_err());
        assert!(Precision::Nanoseconds.to_nanos(i64::MAX).is_err());
        assert!(Precision::Nanoseconds.to_nanos(i64::MAX - 1).is_ok());
        assert!(Precision::Nanoseconds.to_nanos(i64::MIN + 1).is_err());
        assert!(Precision::Nanoseconds.to_nanos(i64::MIN + 2).is_ok());
        assert_eq!(
            Precision::Nanoseconds.to_nanos(i64::MAX).unwrap_err().to_string(),
            "time outside range -9223372036854775806 - 9223372036854775806: 9223372036854775807 in precision ns"
        );
    }

    #[test]
    fn convert_between_units() {
        assert_eq!(
            Precision::Minutes.convert(2, Precision::Seconds).unwrap(),
            120
        );
        assert_eq!(
            Precision::Hours.convert(-1, Precision::Seconds).unwrap(),
            -3600
        );
        assert_eq!(
            Precision::Nanoseconds
                .convert(1_999, Precision::Microseconds)
                .unwrap(),
            1
        );
        assert_eq!(
            Precision::Nanoseconds
                .convert(-1, Precision::Microseconds)
                .unwrap(),
            -1
        );
        assert!(Precision::Seconds
            .convert(i64::MAX / 10, Precision::Nanoseconds)
            .is_err());
    }
}
