//! The hash functions of carbon and carbon-c-relay, bit for bit.
//!
//! MD5 lives here rather than in a dependency because placement needs only its first two
//! bytes of short inputs, on every metric, and the whole function is a page of code that the
//! RFC 1321 test suite below pins down.
//!
//! carbon-c-relay feeds its FNV-1a loops `char` values: signed on x86-64 (Debian's build), so
//! a byte >= 0x80 is sign-extended before the XOR. That differs from textbook FNV-1a only for
//! non-ASCII bytes, and it is what a running carbon-c-relay computes, so it is what we compute.

const INIT: [u32; 4] = [0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476];

/// One MD5 step (RFC 1321 §3.4): `a = b + ((a + f(b, c, d) + x + t) <<< s)`.
macro_rules! step {
    ($f:expr, $a:ident, $b:ident, $c:ident, $d:ident, $x:expr, $t:expr, $s:expr) => {
        $a = $b.wrapping_add(
            $a.wrapping_add($f($b, $c, $d))
                .wrapping_add($x)
                .wrapping_add($t)
                .rotate_left($s),
        );
    };
}

fn round_f(b: u32, c: u32, d: u32) -> u32 {
    (b & c) | (!b & d)
}

fn round_g(b: u32, c: u32, d: u32) -> u32 {
    (b & d) | (c & !d)
}

fn round_h(b: u32, c: u32, d: u32) -> u32 {
    b ^ c ^ d
}

fn round_i(b: u32, c: u32, d: u32) -> u32 {
    c ^ (b | !d)
}

/// The 64 steps written out with RFC 1321's constants (`floor(abs(sin(i + 1)) * 2^32)`),
/// which lets the compiler keep everything in registers: placement hashes every metric.
fn compress(state: &mut [u32; 4], block: &[u8]) {
    debug_assert_eq!(block.len(), 64);
    let mut x = [0u32; 16];
    for (word, bytes) in x.iter_mut().zip(block.chunks_exact(4)) {
        *word = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    }
    let [mut a, mut b, mut c, mut d] = *state;

    step!(round_f, a, b, c, d, x[0], 0xd76aa478, 7);
    step!(round_f, d, a, b, c, x[1], 0xe8c7b756, 12);
    step!(round_f, c, d, a, b, x[2], 0x242070db, 17);
    step!(round_f, b, c, d, a, x[3], 0xc1bdceee, 22);
    step!(round_f, a, b, c, d, x[4], 0xf57c0faf, 7);
    step!(round_f, d, a, b, c, x[5], 0x4787c62a, 12);
    step!(round_f, c, d, a, b, x[6], 0xa8304613, 17);
    step!(round_f, b, c, d, a, x[7], 0xfd469501, 22);
    step!(round_f, a, b, c, d, x[8], 0x698098d8, 7);
    step!(round_f, d, a, b, c, x[9], 0x8b44f7af, 12);
    step!(round_f, c, d, a, b, x[10], 0xffff5bb1, 17);
    step!(round_f, b, c, d, a, x[11], 0x895cd7be, 22);
    step!(round_f, a, b, c, d, x[12], 0x6b901122, 7);
    step!(round_f, d, a, b, c, x[13], 0xfd987193, 12);
    step!(round_f, c, d, a, b, x[14], 0xa679438e, 17);
    step!(round_f, b, c, d, a, x[15], 0x49b40821, 22);

    step!(round_g, a, b, c, d, x[1], 0xf61e2562, 5);
    step!(round_g, d, a, b, c, x[6], 0xc040b340, 9);
    step!(round_g, c, d, a, b, x[11], 0x265e5a51, 14);
    step!(round_g, b, c, d, a, x[0], 0xe9b6c7aa, 20);
    step!(round_g, a, b, c, d, x[5], 0xd62f105d, 5);
    step!(round_g, d, a, b, c, x[10], 0x02441453, 9);
    step!(round_g, c, d, a, b, x[15], 0xd8a1e681, 14);
    step!(round_g, b, c, d, a, x[4], 0xe7d3fbc8, 20);
    step!(round_g, a, b, c, d, x[9], 0x21e1cde6, 5);
    step!(round_g, d, a, b, c, x[14], 0xc33707d6, 9);
    step!(round_g, c, d, a, b, x[3], 0xf4d50d87, 14);
    step!(round_g, b, c, d, a, x[8], 0x455a14ed, 20);
    step!(round_g, a, b, c, d, x[13], 0xa9e3e905, 5);
    step!(round_g, d, a, b, c, x[2], 0xfcefa3f8, 9);
    step!(round_g, c, d, a, b, x[7], 0x676f02d9, 14);
    step!(round_g, b, c, d, a, x[12], 0x8d2a4c8a, 20);

    step!(round_h, a, b, c, d, x[5], 0xfffa3942, 4);
    step!(round_h, d, a, b, c, x[8], 0x8771f681, 11);
    step!(round_h, c, d, a, b, x[11], 0x6d9d6122, 16);
    step!(round_h, b, c, d, a, x[14], 0xfde5380c, 23);
    step!(round_h, a, b, c, d, x[1], 0xa4beea44, 4);
    step!(round_h, d, a, b, c, x[4], 0x4bdecfa9, 11);
    step!(round_h, c, d, a, b, x[7], 0xf6bb4b60, 16);
    step!(round_h, b, c, d, a, x[10], 0xbebfbc70, 23);
    step!(round_h, a, b, c, d, x[13], 0x289b7ec6, 4);
    step!(round_h, d, a, b, c, x[0], 0xeaa127fa, 11);
    step!(round_h, c, d, a, b, x[3], 0xd4ef3085, 16);
    step!(round_h, b, c, d, a, x[6], 0x04881d05, 23);
    step!(round_h, a, b, c, d, x[9], 0xd9d4d039, 4);
    step!(round_h, d, a, b, c, x[12], 0xe6db99e5, 11);
    step!(round_h, c, d, a, b, x[15], 0x1fa27cf8, 16);
    step!(round_h, b, c, d, a, x[2], 0xc4ac5665, 23);

    step!(round_i, a, b, c, d, x[0], 0xf4292244, 6);
    step!(round_i, d, a, b, c, x[7], 0x432aff97, 10);
    step!(round_i, c, d, a, b, x[14], 0xab9423a7, 15);
    step!(round_i, b, c, d, a, x[5], 0xfc93a039, 21);
    step!(round_i, a, b, c, d, x[12], 0x655b59c3, 6);
    step!(round_i, d, a, b, c, x[3], 0x8f0ccc92, 10);
    step!(round_i, c, d, a, b, x[10], 0xffeff47d, 15);
    step!(round_i, b, c, d, a, x[1], 0x85845dd1, 21);
    step!(round_i, a, b, c, d, x[8], 0x6fa87e4f, 6);
    step!(round_i, d, a, b, c, x[15], 0xfe2ce6e0, 10);
    step!(round_i, c, d, a, b, x[6], 0xa3014314, 15);
    step!(round_i, b, c, d, a, x[13], 0x4e0811a1, 21);
    step!(round_i, a, b, c, d, x[4], 0xf7537e82, 6);
    step!(round_i, d, a, b, c, x[11], 0xbd3af235, 10);
    step!(round_i, c, d, a, b, x[2], 0x2ad7d2bb, 15);
    step!(round_i, b, c, d, a, x[9], 0xeb86d391, 21);

    state[0] = state[0].wrapping_add(a);
    state[1] = state[1].wrapping_add(b);
    state[2] = state[2].wrapping_add(c);
    state[3] = state[3].wrapping_add(d);
}

/// The MD5 state after the whole (padded) input.
fn md5_state(input: &[u8]) -> [u32; 4] {
    let mut state = INIT;
    let mut blocks = input.chunks_exact(64);
    for block in &mut blocks {
        compress(&mut state, block);
    }
    let rest = blocks.remainder();
    // The tail, the 0x80 marker and the 64-bit bit length fit in one or two blocks.
    let mut tail = [0u8; 128];
    tail[..rest.len()].copy_from_slice(rest);
    tail[rest.len()] = 0x80;
    let tail_len = if rest.len() < 56 { 64 } else { 128 };
    let bits = (input.len() as u64).wrapping_mul(8);
    tail[tail_len - 8..tail_len].copy_from_slice(&bits.to_le_bytes());
    for block in tail[..tail_len].chunks_exact(64) {
        compress(&mut state, block);
    }
    state
}

/// The 16-byte MD5 digest.
#[cfg(test)]
pub(crate) fn md5(input: &[u8]) -> [u8; 16] {
    let state = md5_state(input);
    let mut out = [0u8; 16];
    for (chunk, word) in out.chunks_exact_mut(4).zip(state) {
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    out
}

/// carbon's ring position: the first two digest bytes, big-endian (`int(hexdigest[:4], 16)`).
pub(crate) fn carbon_position(input: &[u8]) -> u16 {
    let a = md5_state(input)[0].to_le_bytes();
    u16::from_be_bytes([a[0], a[1]])
}

/// carbon-c-relay's 32-bit FNV-1a over C `char`s (see the module docs on sign extension).
pub(crate) fn fnv1a_32(input: &[u8]) -> u32 {
    input.iter().fold(2_166_136_261u32, |hash, &byte| {
        (hash ^ i32::from(byte as i8) as u32).wrapping_mul(16_777_619)
    })
}

/// carbon-c-relay's `fnv1a_ch` ring position: 32-bit FNV-1a folded to 16 bits.
pub(crate) fn fnv1a_position(input: &[u8]) -> u16 {
    let hash = fnv1a_32(input);
    ((hash >> 16) ^ (hash & 0xffff)) as u16
}

/// carbon-c-relay's 64-bit FNV-1a over C `char`s, the `jump_fnv1a_ch` key.
pub(crate) fn fnv1a_64(input: &[u8]) -> u64 {
    input
        .iter()
        .fold(14_695_981_039_346_656_037u64, |hash, &byte| {
            (hash ^ i64::from(byte as i8) as u64).wrapping_mul(1_099_511_628_211)
        })
}

/// Lamping and Veach's jump consistent hash, with carbon-c-relay's floating-point steps.
pub(crate) fn jump_bucket(mut key: u64, buckets: usize) -> usize {
    debug_assert!(buckets > 0);
    let (mut b, mut j) = (-1i64, 0i64);
    while j < buckets as i64 {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        j = ((b + 1) as f64 * ((1i64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    b as usize
}

/// The xorshift64* step carbon-c-relay applies to the key between jump-hash replicas.
pub(crate) fn jump_rehash(mut hash: u64) -> u64 {
    hash ^= hash >> 12;
    hash ^= hash << 25;
    hash ^= hash >> 27;
    hash.wrapping_mul(2_685_821_657_736_338_717)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn md5_rfc1321_suite() {
        let cases = [
            ("", "d41d8cd98f00b204e9800998ecf8427e"),
            ("a", "0cc175b9c0f1b6a831c399e269772661"),
            ("abc", "900150983cd24fb0d6963f7d28e17f72"),
            ("message digest", "f96b697d7cb7938d525a2f31aaf161d0"),
            (
                "abcdefghijklmnopqrstuvwxyz",
                "c3fcd3d76192e4007dfb496cca67e13b",
            ),
            (
                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
                "d174ab98d277d9f5a5611c2c9f419d9f",
            ),
            (
                "12345678901234567890123456789012345678901234567890123456789012345678901234567890",
                "57edf4a22be3c955ac49da2e2107b67a",
            ),
        ];
        for (input, digest) in cases {
            assert_eq!(hex(&md5(input.as_bytes())), digest, "md5({input:?})");
        }
    }

    #[test]
    fn md5_padding_boundaries() {
        // Lengths around the one-block/two-block padding edge (55, 56, 63, 64, 65 bytes),
        // digests from Python's hashlib.md5.
        let cases = [
            (55, "ef1772b6dff9a122358552954ad0df65"),
            (56, "3b0c8ac703f828b04c6c197006d17218"),
            (63, "b06521f39153d618550606be297466d5"),
            (64, "014842d480b571495a4a0363793f7367"),
            (65, "c743a45e0d2e6a95cb859adae0248435"),
        ];
        for (len, digest) in cases {
            assert_eq!(hex(&md5(&vec![b'a'; len])), digest, "md5('a' * {len})");
        }
    }

    #[test]
    fn carbon_position_is_the_first_two_digest_bytes() {
        // hashlib.md5(b"foo.bar").hexdigest() starts with "04f9".
        assert_eq!(carbon_position(b"foo.bar"), 0x04f9);
        assert_eq!(
            carbon_position(b"('10.0.0.1', None):0"),
            u16::from_str_radix(&hex(&md5(b"('10.0.0.1', None):0"))[..4], 16).unwrap()
        );
    }

    #[test]
    fn fnv1a_known_values() {
        // Textbook FNV-1a for ASCII input.
        assert_eq!(fnv1a_32(b""), 0x811c9dc5);
        assert_eq!(fnv1a_32(b"a"), 0xe40c292c);
        assert_eq!(fnv1a_32(b"foobar"), 0xbf9cf968);
        assert_eq!(fnv1a_64(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a_64(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a_64(b"foobar"), 0x85944171f73967e8);
        assert_eq!(fnv1a_position(b"a"), 0xe40c ^ 0x292c);
    }

    #[test]
    fn fnv1a_sign_extends_high_bytes_like_c_char() {
        // 0xe9 as a signed char is -23, i.e. 0xffffffe9 once widened.
        let expected = (0x811c9dc5u32 ^ 0xffff_ffe9).wrapping_mul(16_777_619);
        assert_eq!(fnv1a_32(&[0xe9]), expected);
        let expected64 =
            (0xcbf29ce484222325u64 ^ 0xffff_ffff_ffff_ffe9).wrapping_mul(1_099_511_628_211);
        assert_eq!(fnv1a_64(&[0xe9]), expected64);
    }

    #[test]
    fn jump_hash_known_values() {
        // (key, buckets, bucket), computed with a Python transcription of the paper's C++
        // (Python floats are the same IEEE doubles).
        let cases = [
            (1u64, 1usize, 0usize),
            (42, 57, 43),
            (0xdead_10cc, 1, 0),
            (0xdead_10cc, 666, 361),
            (256, 1024, 520),
            (u64::MAX, 100, 92),
            (0x8594_4171_f739_67e8, 7, 5),
        ];
        for (key, buckets, bucket) in cases {
            assert_eq!(
                jump_bucket(key, buckets),
                bucket,
                "jump({key:#x}, {buckets})"
            );
        }
        // Growing the bucket count only ever moves a key to the new bucket.
        for key in (0..2000u64).map(|k| k.wrapping_mul(0x9e37_79b9_7f4a_7c15)) {
            for buckets in 1..40 {
                let before = jump_bucket(key, buckets);
                let after = jump_bucket(key, buckets + 1);
                assert!(after == before || after == buckets, "key {key} {buckets}");
            }
        }
    }
}
