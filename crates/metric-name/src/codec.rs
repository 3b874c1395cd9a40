//! The two GraphiteEncoder variants, as compositions of Python's codecs:
//! - idna: `quote(s.encode('idna')).replace('.', '%2E')` and
//!   `bytes(unquote(s), 'utf-8').decode('idna')` (`Lib/encodings/idna.py`);
//! - punycode: the same with the `punycode` codec (aiographite 0.2.0 on PyPI).

use std::borrow::Cow;
use std::cell::RefCell;

use crate::error::{Context, Direction, Error};
use crate::nameprep::{self, NameprepError};
use crate::percent::{self, quote_into};
use crate::punycode::{self, DecodeError};
use crate::Encoding;

/// IDNA section 3.1: the label separators Python's `encodings.idna.dots` splits on.
fn is_dot(c: char) -> bool {
    matches!(c, '.' | '\u{3002}' | '\u{FF0E}' | '\u{FF61}')
}

/// Buffers for ToASCII: nameprep's output and working space, and the ASCII result.
#[derive(Default)]
struct Work {
    prepped: Vec<u32>,
    scratch: Vec<u32>,
    ascii: String,
}

/// Per-thread buffers for the non-ASCII path: a label's code points and [`Work`].
#[derive(Default)]
struct Buffers {
    label: Vec<u32>,
    work: Work,
}

impl Buffers {
    /// Keeps a thread from holding on to the buffers of one huge name forever.
    fn trim(&mut self) {
        const KEEP: usize = 1024;
        if self.label.capacity() > KEEP
            || self.work.prepped.capacity() > KEEP
            || self.work.scratch.capacity() > KEEP
        {
            *self = Buffers::default();
        }
    }
}

thread_local! {
    static BUFFERS: RefCell<Buffers> = RefCell::new(Buffers::default());
}

/// Runs `f` with this thread's buffers, so encoding a unicode name allocates nothing but
/// its output.
fn with_buffers<R>(f: impl FnOnce(&mut Buffers) -> R) -> R {
    BUFFERS.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buffers) => {
            let r = f(&mut buffers);
            buffers.trim();
            r
        }
        // Only reachable if `f` re-entered, which it does not; stay correct regardless.
        Err(_) => f(&mut Buffers::default()),
    })
}

/// Why one label failed, before the caller knows where the label is.
enum LabelError {
    EmptyOrTooLong,
    AcePrefix,
    Nameprep(NameprepError),
    Punycode(DecodeError),
    NotRoundTrip { ace: String, reencoded: String },
    Surrogate(u32),
}

impl LabelError {
    fn into_error(self, context: Context) -> Error {
        match self {
            LabelError::EmptyOrTooLong => Error::LabelEmptyOrTooLong { context },
            LabelError::AcePrefix => Error::AcePrefix { context },
            LabelError::Nameprep(e) => Error::from_nameprep(e, context),
            LabelError::Punycode(e) => punycode_error(e, context),
            LabelError::NotRoundTrip { ace, reencoded } => Error::NotRoundTrip {
                ace,
                reencoded,
                context,
            },
            LabelError::Surrogate(code_point) => Error::Surrogate {
                code_point,
                context,
            },
        }
    }
}

fn punycode_error(e: DecodeError, context: Context) -> Error {
    match e {
        DecodeError::NonAscii { byte, position } => Error::NonAscii {
            byte,
            position,
            context,
        },
        DecodeError::Incomplete => Error::IncompletePunycode { context },
        DecodeError::InvalidDigit(digit) => Error::InvalidPunycodeDigit { digit, context },
        DecodeError::OutOfRange(value) => Error::PunycodeOutOfRange { value, context },
    }
}

/// `ToASCII(label)` of `encodings.idna`, writing the ASCII form to `work.ascii`.
fn to_ascii(label: &[u32], work: &mut Work) -> Result<(), LabelError> {
    let Work {
        prepped,
        scratch,
        ascii,
        ..
    } = work;
    ascii.clear();
    // Step 1: an ASCII label is used as is, whatever its case or punctuation.
    let source = if label.iter().all(|&c| c < 0x80) {
        label
    } else {
        // Steps 2-4: nameprep, then ASCII again if that is what it became.
        nameprep::nameprep(label, prepped, scratch).map_err(LabelError::Nameprep)?;
        prepped.as_slice()
    };
    if source.iter().all(|&c| c < 0x80) {
        if source.is_empty() || source.len() >= 64 {
            return Err(LabelError::EmptyOrTooLong);
        }
        ascii.extend(source.iter().filter_map(|&c| char::from_u32(c)));
        return Ok(());
    }
    // Step 5.
    if source.starts_with(&[
        u32::from('x'),
        u32::from('n'),
        u32::from('-'),
        u32::from('-'),
    ]) {
        return Err(LabelError::AcePrefix);
    }
    // Steps 6-8. Each character costs at least one output byte, so 60 or more characters
    // can only fail the length check: skip the (quadratic) encoding Python would do first.
    if source.len() >= 60 {
        return Err(LabelError::EmptyOrTooLong);
    }
    ascii.push_str("xn--");
    punycode::encode_label(source, ascii);
    if ascii.len() >= 64 {
        return Err(LabelError::EmptyOrTooLong);
    }
    Ok(())
}

/// `ToUnicode(label)` for a label of the UTF-8 bytes being decoded.
fn to_unicode(label: &str, out: &mut String, work: &mut Work) -> Result<(), LabelError> {
    let bytes = label.as_bytes();
    let Some(encoded) = bytes.strip_prefix(b"xn--") else {
        // `str(label, "ascii")`.
        if let Some(position) = bytes.iter().position(|b| !b.is_ascii()) {
            return Err(LabelError::Punycode(DecodeError::NonAscii {
                byte: bytes[position],
                position,
            }));
        }
        out.push_str(label);
        return Ok(());
    };
    let decoded = punycode::decode_label(encoded).map_err(LabelError::Punycode)?;
    to_ascii(&decoded, work)?;
    // `label` is ASCII here: punycode decoding checked every byte after the prefix.
    if !label.eq_ignore_ascii_case(&work.ascii)
        || work.ascii.bytes().any(|b| b.is_ascii_uppercase())
    {
        return Err(LabelError::NotRoundTrip {
            ace: label.to_owned(),
            reencoded: work.ascii.clone(),
        });
    }
    for &c in &decoded {
        // ToASCII has just accepted `decoded`, and nameprep prohibits surrogates (C.5).
        out.push(char::from_u32(c).ok_or(LabelError::Surrogate(c))?);
    }
    Ok(())
}

pub(crate) fn idna_encode(segment: &str, out: &mut String) -> Result<(), Error> {
    let context = |label, offset, text: &str| {
        Context::new(Direction::Encode, Encoding::Idna, label, offset, text)
    };
    if segment.is_ascii() {
        // Codec.encode's ASCII fast path: only lengths are checked, and the last label may
        // be empty (a trailing dot) but is reported differently when too long.
        let mut offset = 0;
        let mut labels = segment.split('.').enumerate().peekable();
        while let Some((index, label)) = labels.next() {
            if labels.peek().is_some() {
                if label.is_empty() || label.len() >= 64 {
                    return Err(Error::LabelEmptyOrTooLong {
                        context: context(index, offset, label),
                    });
                }
            } else if label.len() >= 64 {
                return Err(Error::LabelTooLong {
                    context: context(index, offset, label),
                });
            }
            offset += label.len() + 1;
        }
        quote_into(segment, out);
        return Ok(());
    }

    // `dots.split(s)`; an empty last label is a trailing dot, kept as such.
    with_buffers(|Buffers { label: cps, work }| {
        let mut labels = segment.split(is_dot).enumerate().peekable();
        while let Some((index, label)) = labels.next() {
            if index > 0 {
                out.push_str("%2E");
            }
            if label.is_empty() && labels.peek().is_none() {
                break;
            }
            cps.clear();
            cps.extend(label.chars().map(u32::from));
            to_ascii(cps, work).map_err(|e| {
                // `label` is a subslice of `segment`.
                let offset = label.as_ptr() as usize - segment.as_ptr() as usize;
                e.into_error(context(index, offset, label))
            })?;
            quote_into(&work.ascii, out);
        }
        Ok(())
    })
}

/// Maps an offset in the unquoted text back to the caller's text (`unquoted_is_input` when
/// there was nothing to percent-decode).
fn input_offset(segment: &str, unquoted_is_input: bool, offset: usize) -> usize {
    if unquoted_is_input {
        return offset;
    }
    percent::unquote_offsets(segment)
        .get(offset)
        .copied()
        .unwrap_or(segment.len())
}

pub(crate) fn idna_decode(segment: &str, out: &mut String) -> Result<(), Error> {
    let unquoted = percent::unquote(segment);
    let text: &str = &unquoted;
    let bytes = text.as_bytes();
    if bytes.is_empty() {
        return Ok(());
    }
    if text.is_ascii() && !contains_ace_prefix(bytes) {
        out.push_str(text);
        return Ok(());
    }
    // Decoding splits the UTF-8 bytes on ASCII dots only: `bytes.split(b".")`.
    let mut labels: Vec<(usize, &str)> = Vec::new();
    let mut start = 0;
    for (i, _) in text.match_indices('.') {
        labels.push((start, &text[start..i]));
        start = i + 1;
    }
    labels.push((start, &text[start..]));
    let trailing_dot = labels.last().is_some_and(|(_, l)| l.is_empty());
    if trailing_dot {
        labels.pop();
    }
    with_buffers(|Buffers { work, .. }| {
        for (index, &(offset, label)) in labels.iter().enumerate() {
            if index > 0 {
                out.push('.');
            }
            to_unicode(label, out, work).map_err(|e| {
                let at = input_offset(segment, matches!(unquoted, Cow::Borrowed(_)), offset);
                e.into_error(Context::new(
                    Direction::Decode,
                    Encoding::Idna,
                    index,
                    at,
                    label,
                ))
            })?;
        }
        if trailing_dot {
            out.push('.');
        }
        Ok(())
    })
}

fn contains_ace_prefix(bytes: &[u8]) -> bool {
    bytes.windows(4).any(|w| w == b"xn--")
}

pub(crate) fn punycode_encode(segment: &str, out: &mut String) {
    if segment.is_ascii() {
        // All basic code points: punycode is the text itself plus the `-` delimiter.
        quote_into(segment, out);
        if !segment.is_empty() {
            out.push('-');
        }
        return;
    }
    let cps: Vec<u32> = segment.chars().map(u32::from).collect();
    let mut encoded = String::with_capacity(segment.len() + 8);
    punycode::encode(&cps, &mut encoded);
    quote_into(&encoded, out);
}

pub(crate) fn punycode_decode(segment: &str, out: &mut String) -> Result<(), Error> {
    let unquoted = percent::unquote(segment);
    let context = || Context::new(Direction::Decode, Encoding::Punycode, 0, 0, &unquoted);
    let decoded =
        punycode::decode(unquoted.as_bytes()).map_err(|e| punycode_error(e, context()))?;
    out.reserve(decoded.len());
    for c in decoded {
        match char::from_u32(c) {
            Some(ch) => out.push(ch),
            None => {
                return Err(Error::Surrogate {
                    code_point: c,
                    context: context(),
                })
            }
        }
    }
    Ok(())
}
