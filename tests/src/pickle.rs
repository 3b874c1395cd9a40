//! Graphite pickle frames built by hand and decoded independently of fluxgate's own codec, so
//! that the tests check fluxgate against something it did not write.

use serde_pickle::{DeOptions, Value};

/// One datapoint of a pickle frame: `(path, timestamp, value)` as carbon sends them
/// (carbon-relay sends float timestamps, aiographite integers; both become `f64` here).
pub type PickledPoint = (String, f64, f64);

/// A complete frame (4-byte big-endian length + pickle protocol 2) of
/// `[(path, (timestamp, value)), ...]`, opcode for opcode what carbon-relay's
/// `pickle.dumps(datapoints, protocol=2)` produces for str paths, int timestamps and float
/// values.
pub fn pickle_frame(points: &[(&str, i64, f64)]) -> Vec<u8> {
    let mut body = vec![0x80, 2, b']', b'('];
    for &(path, timestamp, value) in points {
        body.push(b'X'); // BINUNICODE: u32 little-endian length + UTF-8
        body.extend_from_slice(
            &u32::try_from(path.len())
                .expect("path < 4 GiB")
                .to_le_bytes(),
        );
        body.extend_from_slice(path.as_bytes());
        push_int(&mut body, timestamp);
        body.push(b'G'); // BINFLOAT: big-endian IEEE 754 double
        body.extend_from_slice(&value.to_be_bytes());
        body.push(0x86); // TUPLE2 (timestamp, value)
        body.push(0x86); // TUPLE2 (path, (timestamp, value))
    }
    body.push(b'e'); // APPENDS
    body.push(b'.'); // STOP
    let mut frame = u32::try_from(body.len())
        .expect("frame < 4 GiB")
        .to_be_bytes()
        .to_vec();
    frame.extend_from_slice(&body);
    frame
}

fn push_int(body: &mut Vec<u8>, value: i64) {
    if let Ok(small) = i32::try_from(value) {
        body.push(b'J'); // BININT: i32 little-endian
        body.extend_from_slice(&small.to_le_bytes());
    } else {
        body.push(0x8a); // LONG1: length byte + two's-complement little-endian
        body.push(8);
        body.extend_from_slice(&value.to_le_bytes());
    }
}

/// Decodes every complete frame at the start of `bytes`; an incomplete last frame (still
/// arriving) is left out.
///
/// # Panics
/// When a complete frame is not a pickled list of `(path, (timestamp, value))`, with the frame's
/// position: a sender under test produced something carbon would reject.
pub fn decode_pickle_frames(bytes: &[u8]) -> Vec<Vec<PickledPoint>> {
    let mut frames = Vec::new();
    let mut offset = 0;
    while bytes.len() - offset >= 4 {
        let header: [u8; 4] = bytes[offset..offset + 4].try_into().expect("4 bytes");
        let length = u32::from_be_bytes(header) as usize;
        let Some(body) = bytes.get(offset + 4..offset + 4 + length) else {
            break;
        };
        frames.push(
            decode_pickle_body(body)
                .unwrap_or_else(|err| panic!("bad pickle frame at byte {offset}: {err}")),
        );
        offset += 4 + length;
    }
    frames
}

/// Decodes one frame body (without the length prefix).
pub fn decode_pickle_body(body: &[u8]) -> Result<Vec<PickledPoint>, String> {
    // `decode_strings`: protocol 0-2 senders (statsd, Python 2 carbon) use STRING opcodes.
    let value = serde_pickle::value_from_slice(body, DeOptions::new().decode_strings())
        .map_err(|err| format!("cannot unpickle: {err}"))?;
    let items = match value {
        Value::List(items) | Value::Tuple(items) => items,
        other => return Err(format!("expected a list of datapoints, got {other:?}")),
    };
    items.into_iter().map(datapoint).collect()
}

fn datapoint(item: Value) -> Result<PickledPoint, String> {
    let describe = format!("{item:?}");
    let (path, pair) = match item {
        Value::Tuple(mut parts) | Value::List(mut parts) if parts.len() == 2 => {
            let pair = parts.pop().expect("two items");
            (parts.pop().expect("two items"), pair)
        }
        _ => {
            return Err(format!(
                "expected (path, (timestamp, value)), got {describe}"
            ))
        }
    };
    let path = match path {
        Value::String(path) => path,
        Value::Bytes(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        _ => return Err(format!("path is not a string in {describe}")),
    };
    let (timestamp, value) = match pair {
        Value::Tuple(parts) | Value::List(parts) if parts.len() == 2 => {
            (number(&parts[0], &describe)?, number(&parts[1], &describe)?)
        }
        _ => return Err(format!("expected (timestamp, value) in {describe}")),
    };
    Ok((path, timestamp, value))
}

#[allow(clippy::cast_precision_loss)]
fn number(value: &Value, context: &str) -> Result<f64, String> {
    match value {
        Value::F64(v) => Ok(*v),
        Value::I64(v) => Ok(*v as f64),
        Value::Int(v) => v
            .to_string()
            .parse()
            .map_err(|_| format!("integer out of range in {context}")),
        Value::Bool(v) => Ok(f64::from(u8::from(*v))),
        Value::String(s) => s
            .trim()
            .parse()
            .map_err(|_| format!("not a number: {s:?} in {context}")),
        _ => Err(format!("not a number: {value:?} in {context}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_round_trips_through_an_independent_unpickler() {
        let frame = pickle_frame(&[("a.b", 1_700_000_000, 1.5), ("c", -1, -2.25)]);
        assert_eq!(
            u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize,
            frame.len() - 4
        );
        assert_eq!(
            decode_pickle_frames(&frame),
            vec![vec![
                ("a.b".to_owned(), 1_700_000_000.0, 1.5),
                ("c".to_owned(), -1.0, -2.25)
            ]]
        );
    }

    #[test]
    fn large_timestamps_use_long1() {
        let frame = pickle_frame(&[("x", 1 << 40, 0.0)]);
        assert_eq!(
            decode_pickle_frames(&frame),
            vec![vec![("x".to_owned(), (1_i64 << 40) as f64, 0.0)]]
        );
    }

    #[test]
    fn incomplete_tail_is_left_for_later() {
        let mut bytes = pickle_frame(&[("x", 1, 2.0)]);
        let second = pickle_frame(&[("y", 3, 4.0)]);
        for cut in 0..second.len() {
            let mut partial = bytes.clone();
            partial.extend_from_slice(&second[..cut]);
            assert_eq!(decode_pickle_frames(&partial).len(), 1, "cut at {cut}");
        }
        bytes.extend_from_slice(&second);
        assert_eq!(decode_pickle_frames(&bytes).len(), 2);
    }

    #[test]
    fn protocol_0_statsd_style_frame_decodes() {
        // statsd: "(lp0\n(S'path'\np1\n(L1700000000L\nS'12'\ntp2\ntp3\na."
        let body = b"(lp0\n(S'path'\np1\n(L1700000000L\nS'12'\np2\ntp3\ntp4\na.";
        assert_eq!(
            decode_pickle_body(body).unwrap(),
            vec![("path".to_owned(), 1_700_000_000.0, 12.0)]
        );
    }

    #[test]
    fn non_list_is_an_error() {
        let err = decode_pickle_body(b"\x80\x02K\x01.").unwrap_err();
        assert!(err.starts_with("expected a list of datapoints"), "{err}");
    }
}
