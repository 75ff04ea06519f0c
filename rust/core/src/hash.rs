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

/// Padded SHA-256 block `k` of the leaf message `0x00 || data` (FIPS 180-4 §5.1.1).
#[inline(always)]
fn leaf_block(data: &[u8], k: usize, blocks: usize) -> [u8; 64] {
    let mut block = [0u8; 64];
    let msg_len = data.len() + 1;
    let start = 64 * k;
    // Message bytes [start, start + 64) intersected with [0, msg_len).
    if start == 0 {
        block[0] = LEAF_PREFIX;
        let n = data.len().min(63);
        block[1..1 + n].copy_from_slice(&data[..n]);
    } else if start < msg_len {
        let from = start - 1;
        let n = (data.len() - from).min(64);
        block[..n].copy_from_slice(&data[from..from + n]);
    }
    if (start..start + 64).contains(&msg_len) {
        block[msg_len - start] = 0x80;
    }
    if k + 1 == blocks {
        let bits = (msg_len as u64).wrapping_mul(8);
        block[56..].copy_from_slice(&bits.to_be_bytes());
    }
    block
}

/// Number of padded SHA-256 blocks for a leaf of `len` data bytes.
#[inline(always)]
fn leaf_blocks(len: usize) -> usize {
    // prefix + data + 0x80 + 64-bit length, rounded up to whole blocks.
    (len + 1 + 1 + 8).div_ceil(64)
}

/// Two leaf hashes at once, interleaved over their common block count.
pub fn leaf_hash_x2(a: &[u8], b: &[u8]) -> [Hash; 2] {
    if !sha_ni::available() {
        return [leaf_hash(a), leaf_hash(b)];
    }
    let (na, nb) = (leaf_blocks(a.len()), leaf_blocks(b.len()));
    let common = na.min(nb);
    let (mut sa, mut sb) = (SHA256_IV, SHA256_IV);
    // Groups of blocks per call amortise the state shuffles.
    const GROUP: usize = 4;
    let mut k = 0;
    while k < common {
        let g = GROUP.min(common - k);
        let mut ba = [[0u8; 64]; GROUP];
        let mut bb = [[0u8; 64]; GROUP];
        for j in 0..g {
            ba[j] = leaf_block(a, k + j, na);
            bb[j] = leaf_block(b, k + j, nb);
        }
        sha_ni::compress_x2(&mut sa, &mut sb, &ba[..g], &bb[..g]);
        k += g;
    }
    for j in common..na {
        compress256(&mut sa, &[leaf_block(a, j, na)]);
    }
    for j in common..nb {
        compress256(&mut sb, &[leaf_block(b, j, nb)]);
    }
    [state_bytes(&sa), state_bytes(&sb)]
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
