//! Differential test against CPython: `gen.py --random` pickles random item lists in
//! random protocols (ints of every width, floats, numeric strings in every spelling,
//! bools, None, unicode and bytes paths, shared and malformed items) and records what
//! carbon keeps of each after `pickle.loads` and `float()`. The decoder must keep exactly
//! the same points and skip the same number of items.

use std::path::Path;
use std::process::Command;

use graphite_pickle::Decoder;
use serde_json::Value;

fn same(a: f64, b: f64) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

fn run(seed: u64, count: usize) {
    let dir = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gen.py");
    let status = Command::new("python3")
        .arg(&script)
        .args([
            "--random",
            dir.path().to_str().unwrap(),
            &seed.to_string(),
            &count.to_string(),
        ])
        .status()
        .unwrap_or_else(|e| {
            panic!("cannot run python3 ({e}): install Python 3 (apt-get install python3)")
        });
    assert!(status.success(), "gen.py --random failed");
    let expected: serde_json::Map<String, Value> =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("expected.json")).unwrap())
            .unwrap();
    assert!(expected.len() > count / 2, "only {} cases", expected.len());
    let mut decoder = Decoder::new();
    for (name, case) in &expected {
        let data = std::fs::read(dir.path().join(format!("{name}.pickle"))).unwrap();
        let decoded = decoder
            .decode(&data)
            .unwrap_or_else(|e| panic!("seed {seed} {name}: {e}"));
        let want = case["points"].as_array().unwrap();
        let got: Vec<(&str, f64, f64)> = decoded
            .points
            .iter()
            .map(|p| (&*p.path, p.timestamp, p.value))
            .collect();
        let ok = got.len() == want.len()
            && got.iter().zip(want).all(|(g, w)| {
                g.0 == w[0].as_str().unwrap()
                    && same(g.1, w[1].as_str().unwrap().parse().unwrap())
                    && same(g.2, w[2].as_str().unwrap().parse().unwrap())
            });
        assert!(ok, "seed {seed} {name}: got {got:?}, Python says {want:?}");
        assert_eq!(
            decoded.skipped.len() as u64,
            case["skipped"].as_u64().unwrap(),
            "seed {seed} {name}: {:?}",
            decoded.skipped
        );
        // Protocols 0 and 1 have no PROTO opcode.
        let protocol = case["protocol"].as_u64().unwrap() as u8;
        assert_eq!(
            decoded.protocol,
            (protocol >= 2).then_some(protocol),
            "seed {seed} {name}"
        );
    }
}

#[test]
fn decoder_agrees_with_cpython_on_random_pickles() {
    for seed in 1..=3 {
        run(seed, 800);
    }
}
