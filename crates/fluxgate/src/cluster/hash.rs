//! The hash functions of carbon and carbon-c-relay, bit for bit.
//!
//! MD5 comes from the `md-5` crate; the RFC 1321 suite and padding-boundary vectors below pin
//! it, and carbon's placement tests pin the positions it gives.
//!
//! carbon-c-relay feeds its FNV-1a loops `char` values: signed on x86-64 (Debian's build), so
//! a byte >= 0x80 is sign-extended before the XOR. That differs from textbook FNV-1a only for
//! non-ASCII bytes, and it is what a running carbon-c-relay computes, so it is what we compute.

use md5::Digest as _;

/// The 16-byte MD5 digest (the `md-5` crate).
#[cfg(test)]
pub(crate) fn md5(input: &[u8]) -> [u8; 16] {
    md5::Md5::digest(input).into()
}

/// carbon's ring position: the first two digest bytes, big-endian (`int(hexdigest[:4], 16)`).
pub(crate) fn carbon_position(input: &[u8]) -> u16 {
    let digest = md5::Md5::digest(input);
    u16::from_be_bytes([digest[0], digest[1]])
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
