//! Graphite plaintext that looks like what a relay forwards.
//!
//! A relay's traffic is many hosts each reporting the same handful of series once per
//! interval: `servers.dc2.host0042.cpu.user 12.5 1700000010`. Distinct names are what make a
//! gateway's per-series work (template matching, name handling, lane hashing) show up, so
//! the corpus has tens of thousands of them by default, with value lengths that vary the way
//! collectd's and diamond's do. Everything is a pure function of the [`Corpus`] settings, so
//! two runs of a benchmark send byte-identical streams.

use std::io::Write;

/// The series every host reports, in the order collectd's cpu plugin emits them.
pub const CPU_FIELDS: [&str; 8] = [
    "user", "system", "idle", "iowait", "nice", "irq", "softirq", "steal",
];

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Corpus {
    /// Distinct metric names. Name `i` is field `i % 8` of host `i / 8`.
    pub names: usize,
    /// Hosts are spread round-robin over `dc1..=dcN`.
    pub datacenters: usize,
    /// Timestamp of the first interval, in seconds.
    pub start: u64,
    /// Seconds between two reports of one series.
    pub interval: u64,
    /// Varies the values (not the names) between otherwise equal corpora.
    pub seed: u64,
}

impl Default for Corpus {
    fn default() -> Self {
        Self {
            names: 50_000,
            datacenters: 4,
            start: 1_700_000_000,
            interval: 10,
            seed: 0,
        }
    }
}

impl Corpus {
    /// Hosts needed for [`Corpus::names`] (the last one may report fewer fields).
    pub fn hosts(&self) -> usize {
        self.names.div_ceil(CPU_FIELDS.len())
    }

    /// The metric name with index `i`.
    pub fn name(&self, i: usize) -> String {
        let mut out = Vec::new();
        self.write_name(i, &mut out);
        String::from_utf8(out).expect("names are ASCII")
    }

    fn write_name(&self, i: usize, out: &mut Vec<u8>) {
        let host = i / CPU_FIELDS.len();
        let field = CPU_FIELDS[i % CPU_FIELDS.len()];
        let dc = host % self.datacenters.max(1) + 1;
        write!(out, "servers.dc{dc}.host{host:04}.cpu.{field}").expect("Vec write");
    }

    /// Indices of the names one of `parts` senders reports. Whole hosts go to one sender,
    /// as when each relay forwards its own set of machines.
    pub fn names_of_part(&self, part: usize, parts: usize) -> impl Iterator<Item = usize> + '_ {
        let per_host = CPU_FIELDS.len();
        (part..self.hosts())
            .step_by(parts.max(1))
            .flat_map(move |h| h * per_host..((h + 1) * per_host).min(self.names))
    }

    /// How many of `lines` lines sender `part` of `parts` sends: as even as possible, the
    /// first senders taking the remainder.
    pub fn lines_of_part(lines: u64, part: usize, parts: usize) -> u64 {
        let parts = parts.max(1) as u64;
        lines / parts + u64::from((part as u64) < lines % parts)
    }

    /// The stream of sender `part` of `parts`: `lines` lines cycling through its names, one
    /// interval after another. Empty if that sender has no names (more senders than hosts).
    pub fn generate(&self, part: usize, parts: usize, lines: u64) -> Vec<u8> {
        let names: Vec<usize> = self.names_of_part(part, parts).collect();
        if names.is_empty() || lines == 0 {
            return Vec::new();
        }
        let mut prefixes = Vec::with_capacity(names.len());
        for &i in &names {
            let mut p = Vec::with_capacity(48);
            self.write_name(i, &mut p);
            p.push(b' ');
            prefixes.push(p);
        }
        let mut out = Vec::with_capacity(lines as usize * 52);
        for n in 0..lines {
            let slot = (n % names.len() as u64) as usize;
            let round = n / names.len() as u64;
            out.extend_from_slice(&prefixes[slot]);
            let hundredths = self.value(names[slot], round);
            write_hundredths(hundredths, &mut out);
            let ts = self.start + round * self.interval;
            writeln!(out, " {ts}").expect("Vec write");
        }
        out
    }

    /// A value in hundredths for name `i` in interval `round`: a CPU percentage whose size
    /// depends on the field, so lines vary in length like real ones.
    fn value(&self, i: usize, round: u64) -> u64 {
        let r = splitmix64(self.seed ^ (i as u64).wrapping_mul(0x9e37_79b9) ^ (round << 40));
        match CPU_FIELDS[i % CPU_FIELDS.len()] {
            "idle" => 5_000 + r % 5_001,
            "user" | "system" => r % 5_000,
            "irq" | "steal" | "nice" => {
                if r.is_multiple_of(4) {
                    r % 100
                } else {
                    0
                }
            }
            _ => r % 1_000,
        }
    }
}

/// `1250` -> `12.5`, `1207` -> `12.07`, `1200` -> `12`: what Python's `repr(round(x, 2))`
/// would send, without a float round trip.
fn write_hundredths(v: u64, out: &mut Vec<u8>) {
    let (int, frac) = (v / 100, v % 100);
    match frac {
        0 => write!(out, "{int}"),
        f if f % 10 == 0 => write!(out, "{int}.{}", f / 10),
        f => write!(out, "{int}.{f:02}"),
    }
    .expect("Vec write");
}

/// A fixed, well-mixed hash: values look random but never change between runs.
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn small() -> Corpus {
        Corpus {
            names: 20,
            datacenters: 2,
            ..Corpus::default()
        }
    }

    #[test]
    fn names_follow_the_relay_layout() {
        let c = small();
        assert_eq!(c.name(0), "servers.dc1.host0000.cpu.user");
        assert_eq!(c.name(9), "servers.dc2.host0001.cpu.system");
        assert_eq!(c.name(19), "servers.dc1.host0002.cpu.iowait");
        assert_eq!(c.hosts(), 3);
    }

    #[test]
    fn values_print_like_python_floats() {
        let s = |v| {
            let mut o = Vec::new();
            write_hundredths(v, &mut o);
            String::from_utf8(o).unwrap()
        };
        assert_eq!(s(1250), "12.5");
        assert_eq!(s(1207), "12.07");
        assert_eq!(s(1200), "12");
        assert_eq!(s(7), "0.07");
        assert_eq!(s(0), "0");
    }

    #[test]
    fn a_stream_cycles_its_names_interval_by_interval() {
        let c = small();
        let text = String::from_utf8(c.generate(0, 1, 21)).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 21);
        assert!(lines[0].starts_with("servers.dc1.host0000.cpu.user "));
        assert!(lines[0].ends_with(" 1700000000"));
        assert!(lines[19].starts_with("servers.dc1.host0002.cpu.iowait "));
        assert!(lines[20].starts_with("servers.dc1.host0000.cpu.user "));
        assert!(lines[20].ends_with(" 1700000010"));
        for l in &lines {
            let parts: Vec<&str> = l.split(' ').collect();
            assert_eq!(parts.len(), 3, "{l}");
            let v: f64 = parts[1].parse().unwrap();
            assert!((0.0..=100.0).contains(&v), "{l}");
        }
    }

    #[test]
    fn parts_split_hosts_and_lines_without_overlap() {
        let c = Corpus {
            names: 1000,
            ..Corpus::default()
        };
        let a: HashSet<usize> = c.names_of_part(0, 3).collect();
        let b: HashSet<usize> = c.names_of_part(1, 3).collect();
        let d: HashSet<usize> = c.names_of_part(2, 3).collect();
        assert!(a.is_disjoint(&b) && b.is_disjoint(&d) && a.is_disjoint(&d));
        assert_eq!(a.len() + b.len() + d.len(), 1000);
        let total: u64 = (0..3).map(|p| Corpus::lines_of_part(10, p, 3)).sum();
        assert_eq!(total, 10);
        assert_eq!(Corpus::lines_of_part(10, 0, 3), 4);
        assert_eq!(Corpus::lines_of_part(10, 2, 3), 3);
    }

    #[test]
    fn generation_is_deterministic_and_seed_changes_only_values() {
        let c = small();
        assert_eq!(c.generate(1, 2, 100), c.generate(1, 2, 100));
        let other = Corpus { seed: 7, ..c }.generate(1, 2, 100);
        let names = |b: &[u8]| -> Vec<String> {
            String::from_utf8(b.to_vec())
                .unwrap()
                .lines()
                .map(|l| l.split(' ').next().unwrap().to_owned())
                .collect()
        };
        assert_ne!(other, c.generate(1, 2, 100));
        assert_eq!(names(&other), names(&c.generate(1, 2, 100)));
    }

    #[test]
    fn a_sender_without_hosts_sends_nothing() {
        assert!(small().generate(5, 6, 100).is_empty());
    }
}
