//! Frames from [`FrameEncoder`] fed to carbon's real pickle receiver: Debian's
//! graphite-carbon under `/usr/bin/python3`, `carbon.protocols.MetricPickleReceiver`
//! (twisted's Int32StringReceiver framing with `PICKLE_RECEIVER_MAX_LENGTH`, carbon's
//! SafeUnpickler, its item loop and `float()` calls), only `metricReceived` replaced to
//! record what carbon would have stored.

use std::io::Write;
use std::process::{Command, Stdio};

use graphite_pickle::{FrameEncoder, FrameSplitter, DEFAULT_MAX_FRAME_BYTES};
use serde_json::Value;

const PYTHON: &str = "/usr/bin/python3";

const RECEIVER: &str = r#"
import json, sys
try:
    from carbon.protocols import MetricPickleReceiver
    from carbon.util import get_unpickler
except ImportError as e:
    print("IMPORT-ERROR: %s" % e)
    sys.exit(3)

class Transport:
    closed = False
    def loseConnection(self):
        self.closed = True

class Receiver(MetricPickleReceiver):
    def __init__(self):
        super().__init__()
        self.unpickler = get_unpickler(insecure=False)
        self.peerName = "fluxgate-test"
        self.transport = Transport()
        self.points, self.frames, self.errors = [], [], []
    def stringReceived(self, data):
        self.frames.append(len(data))
        try:
            self.frame_points = self.unpickler.loads(data)
        except Exception as e:
            self.errors.append(repr(e))
        super().stringReceived(data)
    def metricReceived(self, metric, datapoint):
        self.points.append([metric, repr(datapoint[0]), repr(datapoint[1])])

stream = sys.stdin.buffer.read()
r = Receiver()
# Read as a socket would: in pieces.
for i in range(0, len(stream), 65536):
    r.dataReceived(stream[i:i + 65536])
print(json.dumps({"points": r.points, "frames": r.frames, "errors": r.errors,
                  "closed": r.transport.closed, "max_length": r.MAX_LENGTH,
                  "leftover": len(r._unprocessed)}))
"#;

/// What carbon's receiver made of `stream`.
fn carbon_receives(stream: &[u8]) -> Value {
    let child = Command::new(PYTHON)
        .arg("-c")
        .arg(RECEIVER)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => panic!(
            "cannot run {PYTHON} ({e}): carbon's unpickler is the reference for this test; \
             install it with `apt-get install graphite-carbon`"
        ),
    };
    child.stdin.take().unwrap().write_all(stream).unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    if stdout.starts_with("IMPORT-ERROR") || out.status.code() == Some(3) {
        panic!(
            "{PYTHON} cannot import carbon ({}): install it with `apt-get install graphite-carbon`",
            stdout.trim()
        );
    }
    assert!(
        out.status.success(),
        "carbon receiver failed: {}\n{}",
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap()
}

/// Python's `repr(float)`, through Rust's shortest round-trip formatting.
fn py_repr(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf" } else { "-inf" }.into();
    }
    let plain = format!("{f:?}");
    let (mantissa, exp) = {
        let e = format!("{f:e}");
        let (m, x) = e.split_once('e').unwrap();
        (m.to_string(), x.parse::<i32>().unwrap())
    };
    // Python switches to exponent notation below 1e-4 and from 1e16.
    if (-4..16).contains(&exp) {
        plain
    } else {
        format!(
            "{mantissa}e{}{:02}",
            if exp < 0 { '-' } else { '+' },
            exp.abs()
        )
    }
}

fn check(points: &[(String, f64, f64)], encoder: FrameEncoder) -> Value {
    let mut stream = Vec::new();
    let summary = encoder.encode(
        points.iter().map(|(p, t, v)| (p.as_str(), *t, *v)),
        &mut stream,
    );
    assert_eq!(summary.points, points.len());
    assert_eq!(summary.oversized, 0);
    let got = carbon_receives(&stream);
    assert_eq!(
        got["errors"],
        Value::Array(vec![]),
        "carbon's unpickler refused a frame"
    );
    assert_eq!(got["closed"], false, "carbon closed the connection");
    assert_eq!(got["leftover"], 0, "carbon has bytes it could not frame");
    assert_eq!(got["max_length"], DEFAULT_MAX_FRAME_BYTES);
    let want: Vec<Value> = points
        .iter()
        .map(|(p, t, v)| serde_json::json!([p, py_repr(*t), py_repr(*v)]))
        .collect();
    let have = got["points"].as_array().unwrap();
    assert_eq!(have.len(), want.len());
    for (i, (h, w)) in have.iter().zip(&want).enumerate() {
        assert_eq!(h, w, "point {i}");
    }
    let frames: Vec<u64> = got["frames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_u64().unwrap())
        .collect();
    assert_eq!(frames.len(), summary.frames);
    // Our own splitter sees the same frame lengths.
    let ours: Vec<u64> = FrameSplitter::default()
        .split(&stream)
        .map(|f| f.unwrap().len() as u64)
        .collect();
    assert_eq!(frames, ours);
    got
}

#[test]
fn python_repr_of_floats() {
    for (f, r) in [
        (1.0, "1.0"),
        (12.5, "12.5"),
        (1.7e9, "1700000000.0"),
        (1e16, "1e+16"),
        (1.5e-5, "1.5e-05"),
        (0.0001, "0.0001"),
        (-1.25e10, "-12500000000.0"),
        (1.2345678901234567e300, "1.2345678901234567e+300"),
    ] {
        assert_eq!(py_repr(f), r);
    }
}

#[test]
fn carbon_reads_every_value_back_exactly() {
    let mut points = vec![
        (
            "servers.dc1.host0001.cpu.user".to_string(),
            1_700_000_000.0,
            12.5,
        ),
        (
            "servers.dc1.host0001.cpu.idle".into(),
            1_700_000_000.0,
            -0.0,
        ),
        ("fractional.timestamp".into(), 1_700_000_000.25, 1e-300),
        ("negative.timestamp".into(), -1.0, -7.0),
        ("beyond.2038".into(), 4_102_444_800.0, 1.0),
        ("huge.value".into(), 1_700_000_000.0, f64::MAX),
        ("inf.value".into(), 1_700_000_000.0, f64::INFINITY),
        ("nan.value".into(), 1_700_000_000.0, f64::NAN),
        (
            "servers.h\u{e9}llo.\u{6e29}\u{5ea6}.emoji\u{1F600}".into(),
            1_700_000_000.0,
            3.0,
        ),
        ("tagged;dc=eu;env=prod".into(), 1_700_000_000.0, 4.0),
    ];
    // NaN is filtered by MetricReceiver.metricReceived, which the harness replaces, so
    // carbon's receiver does hand it over: the encoder must carry it faithfully.
    points.extend((0..40).map(|i| {
        (
            format!("servers.dc2.host{i:04}.load"),
            1_700_000_000.0 + f64::from(i),
            f64::from(i) / 3.0,
        )
    }));
    check(&points, FrameEncoder::new());
}

#[test]
fn carbon_reads_500_point_frames() {
    let points: Vec<(String, f64, f64)> = (0..1234)
        .map(|i| {
            (
                format!("servers.dc{}.host{:04}.cpu.user", i % 3, i),
                1_700_000_000.0,
                f64::from(i) * 0.5,
            )
        })
        .collect();
    let got = check(&points, FrameEncoder::new());
    let frames = got["frames"].as_array().unwrap();
    assert_eq!(frames.len(), 3, "500 + 500 + 234 points");
}

#[test]
fn carbon_reads_frames_split_at_one_mebibyte() {
    // 1200 points with 3 KB paths: about 3.6 MB, so the byte limit splits before the
    // 500-point limit does.
    let points: Vec<(String, f64, f64)> = (0..1200)
        .map(|i| {
            (
                format!("{}.{i}", "long.segment".repeat(250)),
                1_700_000_000.0,
                f64::from(i),
            )
        })
        .collect();
    let got = check(&points, FrameEncoder::new());
    let frames: Vec<u64> = got["frames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_u64().unwrap())
        .collect();
    assert!(frames.len() >= 3, "{frames:?}");
    assert!(
        frames.iter().all(|&f| f <= DEFAULT_MAX_FRAME_BYTES as u64),
        "{frames:?}"
    );
    // Frames are filled: each but the last is within one point of the limit.
    let point = 6 + graphite_pickle::FrameEncoder::point_size(&points[0].0, 1.7e9) as u64;
    for f in &frames[..frames.len() - 1] {
        assert!(DEFAULT_MAX_FRAME_BYTES as u64 - f < point, "{frames:?}");
    }
}

#[test]
fn carbon_refuses_what_the_decoder_refuses_too() {
    // A length over PICKLE_RECEIVER_MAX_LENGTH makes carbon drop the connection, as the
    // splitter reports a non-continuable error.
    let mut stream = ((DEFAULT_MAX_FRAME_BYTES + 1) as u32)
        .to_be_bytes()
        .to_vec();
    stream.extend_from_slice(b"\x80\x02].");
    let got = carbon_receives(&stream);
    assert_eq!(got["closed"], true);
    let err = FrameSplitter::default()
        .split(&stream)
        .next()
        .unwrap()
        .unwrap_err();
    assert!(!err.can_continue());
}
