//! RFC 6962 §2.1 hashing: leaves are `H(0x00 || data)`, interior nodes `H(0x01 || l || r)`.
//!
//! Node hashing is the hot path of every root and proof. A node message is
//! always 65 bytes, so its SHA-256 padding is fixed: we lay out the two
//! 64-byte blocks ourselves and call the raw compression function, skipping
//! the `Digest` buffering. sha2 picks the SHA-NI backend at runtime.

use sha2::block_api::compress256;
use sha2::{Digest, Sha256};

use crate::sha_ni;

/// A SHA-256 output.
pub type Hash = [u8; 32];

/// RFC 6962 §2.1 domain-separation prefix for leaves.
pub const LEAF_PREFIX: u8 = 0x00;
/// RFC 6962 §2.1 domain-separation prefix for interior nodes.
pub const NODE_PREFIX: u8 = 0x01;

/// The root of the empty tree, `SHA-256("")` (RFC 6962 §2.1).
pub const EMPTY_ROOT: Hash = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

/// FIPS 180-4 §5.3.3 initial SHA-256 state.
const SHA256_IV: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

/// Bit length of a node message (1 + 32 + 32 bytes), for the FIPS 180-4 §5.1.1 padding.
const NODE_MESSAGE_BITS: u64 = 65 * 8;

/// Leaf hash of `data`.
#[inline]
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([LEAF_PREFIX]);
    h.update(data);
    h.finalize().into()
}

/// The two padded SHA-256 blocks of `0x01 || left || right`.
#[inline(always)]
fn node_blocks(left: &Hash, right: &Hash) -> [[u8; 64]; 2] {
    let mut blocks = [[0u8; 64]; 2];
    blocks[0][0] = NODE_PREFIX;
    blocks[0][1..33].copy_from_slice(left);
    blocks[0][33..64].copy_from_slice(&right[..31]);
    blocks[1][0] = right[31];
    blocks[1][1] = 0x80;
    blocks[1][56..64].copy_from_slice(&NODE_MESSAGE_BITS.to_be_bytes());
    blocks
}

#[inline(always)]
fn state_bytes(state: &[u32; 8]) -> Hash {
    let mut out = [0u8; 32];
    for (chunk, word) in out.chunks_exact_mut(4).zip(state) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    out
}

/// Interior node hash of two children.
#[inline]
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut state = SHA256_IV;
    compress256(&mut state, &node_blocks(left, right));
    state_bytes(&state)
}

/// `H(0x01 || left || right)` over byte strings of any length (RFC 6962 §2.1 as written).
pub fn node_hash_bytes(left: &[u8], right: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([NODE_PREFIX]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// Two independent node hashes at once, interleaved where the CPU allows.
#[inline]
pub fn node_hash_x2(l0: &Hash, r0: &Hash, l1: &Hash, r1: &Hash) -> [Hash; 2] {
    let (mut s0, mut s1) = (SHA256_IV, SHA256_IV);
    let (b0, b1) = (node_blocks(l0, r0), node_blocks(l1, r1));
    if sha_ni::compress_x2(&mut s0, &mut s1, &b0, &b1) {
        [state_bytes(&s0), state_bytes(&s1)]
    } else {
        [node_hash(l0, r0), node_hash(l1, r1)]
    }
}

/// The SHA-256 blocks of a leaf message `0x00 || data` (FIPS 180-4 §5.1.1 padding):
/// a built first block, the data's whole blocks read in place, one or two built tail blocks.
struct LeafMessage<'a> {
    head: [[u8; 64]; 1],
    has_head: bool,
    mid: &'a [[u8; 64]],
    tail: [[u8; 64]; 2],
    tail_len: usize,
}

/// Reinterprets the whole 64-byte blocks at the start of `bytes`, without a copy.
fn as_blocks(bytes: &[u8]) -> &[[u8; 64]] {
    // Cut to whole blocks first: the cast of an exact multiple cannot fail.
    bytemuck::cast_slice(&bytes[..bytes.len() - bytes.len() % 64])
}

impl<'a> LeafMessage<'a> {
    fn new(data: &'a [u8]) -> Self {
        let bits = (data.len() as u64).wrapping_add(1).wrapping_mul(8);
        let mut m = LeafMessage {
            head: [[0u8; 64]; 1],
            has_head: false,
            mid: &[],
            tail: [[0u8; 64]; 2],
            tail_len: 1,
        };
        // Bytes of the message already placed in tail[0]; always below 64.
        let used = if data.len() >= 63 {
            m.has_head = true;
            m.head[0][0] = LEAF_PREFIX;
            m.head[0][1..].copy_from_slice(&data[..63]);
            let rest = &data[63..];
            let whole = rest.len() - rest.len() % 64;
            m.mid = as_blocks(&rest[..whole]);
            let rem = &rest[whole..];
            m.tail[0][..rem.len()].copy_from_slice(rem);
            rem.len()
        } else {
            m.tail[0][0] = LEAF_PREFIX;
            m.tail[0][1..=data.len()].copy_from_slice(data);
            data.len() + 1
        };
        m.tail[0][used] = 0x80;
        if used + 1 + 8 > 64 {
            m.tail_len = 2;
        }
        m.tail[m.tail_len - 1][56..].copy_from_slice(&bits.to_be_bytes());
        m
    }

    fn segments(&self) -> [&[[u8; 64]]; 3] {
        let head: &[[u8; 64]] = if self.has_head { &self.head } else { &[] };
        [head, self.mid, &self.tail[..self.tail_len]]
    }
}

/// Two leaf hashes at once: their blocks go through the SHA unit interleaved
/// while both have blocks left, the longer one finishes alone.
pub fn leaf_hash_x2(a: &[u8], b: &[u8]) -> [Hash; 2] {
    if !sha_ni::available() {
        return [leaf_hash(a), leaf_hash(b)];
    }
    let (ma, mb) = (LeafMessage::new(a), LeafMessage::new(b));
    let (sa, sb) = (ma.segments(), mb.segments());
    let (mut sta, mut stb) = (SHA256_IV, SHA256_IV);
    let (mut ia, mut oa, mut ib, mut ob) = (0usize, 0usize, 0usize, 0usize);
    loop {
        while ia < 3 && oa == sa[ia].len() {
            ia += 1;
            oa = 0;
        }
        while ib < 3 && ob == sb[ib].len() {
            ib += 1;
            ob = 0;
        }
        if ia == 3 || ib == 3 {
            break;
        }
        let run = (sa[ia].len() - oa).min(sb[ib].len() - ob);
        sha_ni::compress_x2(
            &mut sta,
            &mut stb,
            &sa[ia][oa..oa + run],
            &sb[ib][ob..ob + run],
        );
        oa += run;
        ob += run;
    }
    if ia < 3 {
        compress256(&mut sta, &sa[ia][oa..]);
        for seg in &sa[ia + 1..] {
            compress256(&mut sta, seg);
        }
    }
    if ib < 3 {
        compress256(&mut stb, &sb[ib][ob..]);
        for seg in &sb[ib + 1..] {
            compress256(&mut stb, seg);
        }
    }
    [state_bytes(&sta), state_bytes(&stb)]
}

/// Hashes adjacent pairs: `out[i] = node_hash(input[2i], input[2i+1])`.
///
/// This is the level-by-level kernel of root computation; the nodes are
/// independent, which leaves room for interleaved hashing.
///
/// Only `min(input.len() / 2, out.len())` pairs are written.
#[inline]
pub fn hash_pairs(input: &[Hash], out: &mut [Hash]) {
    let n = (input.len() / 2).min(out.len());
    let (quads, rest) = input[..2 * n].split_at(2 * n - 2 * (n % 2));
    for (q, dst) in quads.chunks_exact(4).zip(out.chunks_exact_mut(2)) {
        let [a, b] = node_hash_x2(&q[0], &q[1], &q[2], &q[3]);
        dst[0] = a;
        dst[1] = b;
    }
    if let [l, r] = rest {
        out[n - 1] = node_hash(l, r);
    }
}

/// Reduces a power-of-two run of hashes in place to its root, in `buf[0]`.
///
/// Callers pass `buf.len()` a power of two; any other length is reduced
/// as if truncated to the largest power of two not above it.
#[inline]
pub(crate) fn reduce_in_place(buf: &mut [Hash]) -> Hash {
    let mut len = buf.len();
    if len == 0 {
        return EMPTY_ROOT;
    }
    while len > 1 {
        let half = len / 2;
        let mut i = 0;
        // Both inputs of a pair are read before either output slot is written,
        // and outputs (i, i + 1) never lie after the inputs (2i .. 2i + 3).
        while i + 1 < half {
            let [a, b] = node_hash_x2(
                &buf[2 * i],
                &buf[2 * i + 1],
                &buf[2 * i + 2],
                &buf[2 * i + 3],
            );
            buf[i] = a;
            buf[i + 1] = b;
            i += 2;
        }
        if i < half {
            buf[i] = node_hash(&buf[2 * i], &buf[2 * i + 1]);
        }
        len = half;
    }
    buf[0]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node_hash_digest(left: &Hash, right: &Hash) -> Hash {
        let mut h = Sha256::new();
        h.update([NODE_PREFIX]);
        h.update(left);
        h.update(right);
        h.finalize().into()
    }

    #[test]
    fn empty_root_is_sha256_of_nothing() {
        let digest: Hash = Sha256::digest(b"").into();
        assert_eq!(digest, EMPTY_ROOT);
    }

    #[test]
    fn empty_leaf_matches_rfc6962_vector() {
        // RFC 6962 reference: H(0x00) = 6e340b9c...a01d.
        let h = leaf_hash(b"");
        assert_eq!(h[..4], [0x6e, 0x34, 0x0b, 0x9c]);
        assert_eq!(h[30..], [0xa0, 0x1d]);
    }

    #[test]
    fn padded_node_hash_equals_digest_node_hash() {
        let mut l = [0u8; 32];
        let mut r = [0u8; 32];
        for i in 0..200u8 {
            l[usize::from(i % 32)] = l[usize::from(i % 32)].wrapping_add(i).rotate_left(3);
            r[usize::from(i.wrapping_mul(7) % 32)] ^= i.wrapping_mul(31);
            assert_eq!(node_hash(&l, &r), node_hash_digest(&l, &r));
        }
    }

    #[test]
    fn hash_pairs_matches_node_hash() {
        let input: Vec<Hash> = (0..6u8).map(|i| leaf_hash(&[i])).collect();
        let mut out = [[0u8; 32]; 3];
        hash_pairs(&input, &mut out);
        for i in 0..3 {
            assert_eq!(out[i], node_hash(&input[2 * i], &input[2 * i + 1]));
        }
    }

    #[test]
    fn interleaved_hashes_match_single_ones() {
        let a = leaf_hash(b"a");
        let b = leaf_hash(b"b");
        assert_eq!(
            node_hash_x2(&a, &b, &b, &a),
            [node_hash(&a, &b), node_hash(&b, &a)]
        );
        let data: Vec<u8> = (0..2000u32).map(|i| (i * 7 % 256) as u8).collect();
        for la in [
            0usize, 1, 54, 55, 56, 62, 63, 64, 65, 118, 119, 120, 127, 128, 700, 1999,
        ] {
            for lb in [0usize, 55, 63, 64, 700, 1500] {
                let got = leaf_hash_x2(&data[..la], &data[1..=lb]);
                assert_eq!(
                    got,
                    [leaf_hash(&data[..la]), leaf_hash(&data[1..=lb])],
                    "{la} {lb}"
                );
            }
        }
    }

    #[test]
    fn hash_pairs_odd_count() {
        let input: Vec<Hash> = (0..10u8).map(|i| leaf_hash(&[i])).collect();
        let mut out = [[0u8; 32]; 5];
        hash_pairs(&input, &mut out);
        for i in 0..5 {
            assert_eq!(out[i], node_hash(&input[2 * i], &input[2 * i + 1]));
        }
    }

    #[test]
    fn reduce_in_place_of_four() {
        let mut buf: Vec<Hash> = (0..4u8).map(|i| leaf_hash(&[i])).collect();
        let want = node_hash(&node_hash(&buf[0], &buf[1]), &node_hash(&buf[2], &buf[3]));
        assert_eq!(reduce_in_place(&mut buf), want);
    }
}
