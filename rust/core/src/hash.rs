//! RFC 6962 §2.1 hashing: leaves are `H(0x00 || data)`, interior nodes `H(0x01 || l || r)`.
//!
//! Node hashing is the hot path of every root and proof. A node message is
//! always 65 bytes, so its SHA-256 padding is fixed: we lay out the two
//! 64-byte blocks ourselves and call the raw compression function, skipping
//! the `Digest` buffering. sha2 picks the SHA-NI backend at runtime.

use sha2::block_api::compress256;
use sha2::{Digest, Sha256};

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

/// Hashes adjacent pairs: `out[i] = node_hash(input[2i], input[2i+1])`.
///
/// This is the level-by-level kernel of root computation; the nodes are
/// independent, which leaves room for interleaved hashing.
///
/// Only `min(input.len() / 2, out.len())` pairs are written.
#[inline]
pub fn hash_pairs(input: &[Hash], out: &mut [Hash]) {
    for (pair, dst) in input.chunks_exact(2).zip(out.iter_mut()) {
        *dst = node_hash(&pair[0], &pair[1]);
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
        for i in 0..half {
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
    fn reduce_in_place_of_four() {
        let mut buf: Vec<Hash> = (0..4u8).map(|i| leaf_hash(&[i])).collect();
        let want = node_hash(&node_hash(&buf[0], &buf[1]), &node_hash(&buf[2], &buf[3]));
        assert_eq!(reduce_in_place(&mut buf), want);
    }
}
