//! Two SHA-256 compressions interleaved on x86 SHA extensions.
//!
//! One `sha256rnds2` chain is bound by instruction latency, not throughput:
//! running two independent messages through alternating instructions keeps
//! the SHA unit busy, which is where batches of independent nodes (a tree
//! level, two proofs, two leaves) gain over one-at-a-time hashing. The round
//! structure is FIPS 180-4 §6.2.2 as the SHA-NI instructions lay it out:
//! state in ABEF/CDGH halves, four rounds per message vector.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// FIPS 180-4 §4.2.2 SHA-256 round constants.
#[cfg(target_arch = "x86_64")]
static K: [u32; 64] = [
    0x428a_2f98,
    0x7137_4491,
    0xb5c0_fbcf,
    0xe9b5_dba5,
    0x3956_c25b,
    0x59f1_11f1,
    0x923f_82a4,
    0xab1c_5ed5,
    0xd807_aa98,
    0x1283_5b01,
    0x2431_85be,
    0x550c_7dc3,
    0x72be_5d74,
    0x80de_b1fe,
    0x9bdc_06a7,
    0xc19b_f174,
    0xe49b_69c1,
    0xefbe_4786,
    0x0fc1_9dc6,
    0x240c_a1cc,
    0x2de9_2c6f,
    0x4a74_84aa,
    0x5cb0_a9dc,
    0x76f9_88da,
    0x983e_5152,
    0xa831_c66d,
    0xb003_27c8,
    0xbf59_7fc7,
    0xc6e0_0bf3,
    0xd5a7_9147,
    0x06ca_6351,
    0x1429_2967,
    0x27b7_0a85,
    0x2e1b_2138,
    0x4d2c_6dfc,
    0x5338_0d13,
    0x650a_7354,
    0x766a_0abb,
    0x81c2_c92e,
    0x9272_2c85,
    0xa2bf_e8a1,
    0xa81a_664b,
    0xc24b_8b70,
    0xc76c_51a3,
    0xd192_e819,
    0xd699_0624,
    0xf40e_3585,
    0x106a_a070,
    0x19a4_c116,
    0x1e37_6c08,
    0x2748_774c,
    0x34b0_bcb5,
    0x391c_0cb3,
    0x4ed8_aa4a,
    0x5b9c_ca4f,
    0x682e_6ff3,
    0x748f_82ee,
    0x78a5_636f,
    0x84c8_7814,
    0x8cc7_0208,
    0x90be_fffa,
    0xa450_6ceb,
    0xbef9_a3f7,
    0xc671_78f2,
];

/// Whether this CPU has the SHA extensions (checked once by std, then cached).
#[inline]
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("sha")
            && std::arch::is_x86_feature_detected!("sse4.1")
            && std::arch::is_x86_feature_detected!("ssse3")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Compresses `blocks_a` into `state_a` and `blocks_b` into `state_b`, interleaved.
///
/// Returns `false` (touching nothing) when the CPU lacks SHA extensions or
/// the block counts differ; the caller then hashes one stream at a time.
#[inline]
pub fn compress_x2(
    state_a: &mut [u32; 8],
    state_b: &mut [u32; 8],
    blocks_a: &[[u8; 64]],
    blocks_b: &[[u8; 64]],
) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        if blocks_a.len() == blocks_b.len() && available() {
            // SAFETY: the CPU supports sha, sse4.1 and ssse3 (checked just above),
            // which are the target features `compress_x2_ni` is compiled for.
            unsafe { compress_x2_ni(state_a, state_b, blocks_a, blocks_b) };
            return true;
        }
    }
    let _ = (state_a, state_b, blocks_a, blocks_b);
    false
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
fn compress_x2_ni(
    state_a: &mut [u32; 8],
    state_b: &mut [u32; 8],
    blocks_a: &[[u8; 64]],
    blocks_b: &[[u8; 64]],
) {
    // Big-endian words: byte-swap each 32-bit lane on load.
    let bswap = _mm_set_epi64x(0x0c0d_0e0f_0809_0a0b, 0x0405_0607_0001_0203);

    let load_state = |s: &[u32; 8]| {
        // SAFETY: `s` holds 8 u32s = two unaligned 16-byte loads in bounds.
        let (dcba, hgfe) = unsafe {
            let p = s.as_ptr().cast::<__m128i>();
            (_mm_loadu_si128(p), _mm_loadu_si128(p.add(1)))
        };
        let cdab = _mm_shuffle_epi32(dcba, 0xB1);
        let efgh = _mm_shuffle_epi32(hgfe, 0x1B);
        (
            _mm_alignr_epi8(cdab, efgh, 8),
            _mm_blend_epi16(efgh, cdab, 0xF0),
        )
    };
    let store_state = |s: &mut [u32; 8], abef: __m128i, cdgh: __m128i| {
        let feba = _mm_shuffle_epi32(abef, 0x1B);
        let dchg = _mm_shuffle_epi32(cdgh, 0xB1);
        let dcba = _mm_blend_epi16(feba, dchg, 0xF0);
        let hgef = _mm_alignr_epi8(dchg, feba, 8);
        // SAFETY: two unaligned 16-byte stores inside the 32-byte state.
        unsafe {
            let p = s.as_mut_ptr().cast::<__m128i>();
            _mm_storeu_si128(p, dcba);
            _mm_storeu_si128(p.add(1), hgef);
        }
    };
    let load_block = |b: &[u8; 64]| -> [__m128i; 4] {
        let p = b.as_ptr().cast::<__m128i>();
        // SAFETY: four unaligned 16-byte loads inside the 64-byte block.
        std::array::from_fn(|i| unsafe { _mm_shuffle_epi8(_mm_loadu_si128(p.add(i)), bswap) })
    };

    let (mut abef_a, mut cdgh_a) = load_state(state_a);
    let (mut abef_b, mut cdgh_b) = load_state(state_b);

    for (block_a, block_b) in blocks_a.iter().zip(blocks_b) {
        let (save_abef_a, save_cdgh_a) = (abef_a, cdgh_a);
        let (save_abef_b, save_cdgh_b) = (abef_b, cdgh_b);
        let mut wa = load_block(block_a);
        let mut wb = load_block(block_b);

        // 16 groups of 4 rounds; groups 4.. extend the message schedule first.
        macro_rules! group {
            ($r:expr) => {{
                const R: usize = $r;
                const I: usize = R % 4;
                if R >= 4 {
                    let ta = _mm_add_epi32(
                        _mm_sha256msg1_epu32(wa[I], wa[(I + 1) % 4]),
                        _mm_alignr_epi8(wa[(I + 3) % 4], wa[(I + 2) % 4], 4),
                    );
                    let tb = _mm_add_epi32(
                        _mm_sha256msg1_epu32(wb[I], wb[(I + 1) % 4]),
                        _mm_alignr_epi8(wb[(I + 3) % 4], wb[(I + 2) % 4], 4),
                    );
                    wa[I] = _mm_sha256msg2_epu32(ta, wa[(I + 3) % 4]);
                    wb[I] = _mm_sha256msg2_epu32(tb, wb[(I + 3) % 4]);
                }
                let k = _mm_set_epi32(
                    K[4 * R + 3] as i32,
                    K[4 * R + 2] as i32,
                    K[4 * R + 1] as i32,
                    K[4 * R] as i32,
                );
                let ka = _mm_add_epi32(wa[I], k);
                let kb = _mm_add_epi32(wb[I], k);
                cdgh_a = _mm_sha256rnds2_epu32(cdgh_a, abef_a, ka);
                cdgh_b = _mm_sha256rnds2_epu32(cdgh_b, abef_b, kb);
                abef_a = _mm_sha256rnds2_epu32(abef_a, cdgh_a, _mm_shuffle_epi32(ka, 0x0E));
                abef_b = _mm_sha256rnds2_epu32(abef_b, cdgh_b, _mm_shuffle_epi32(kb, 0x0E));
            }};
        }
        group!(0);
        group!(1);
        group!(2);
        group!(3);
        group!(4);
        group!(5);
        group!(6);
        group!(7);
        group!(8);
        group!(9);
        group!(10);
        group!(11);
        group!(12);
        group!(13);
        group!(14);
        group!(15);

        abef_a = _mm_add_epi32(abef_a, save_abef_a);
        cdgh_a = _mm_add_epi32(cdgh_a, save_cdgh_a);
        abef_b = _mm_add_epi32(abef_b, save_abef_b);
        cdgh_b = _mm_add_epi32(cdgh_b, save_cdgh_b);
    }

    store_state(state_a, abef_a, cdgh_a);
    store_state(state_b, abef_b, cdgh_b);
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::block_api::compress256;

    #[test]
    fn interleaved_equals_two_single_compressions() {
        let iv = [
            0x6a09_e667u32,
            0xbb67_ae85,
            0x3c6e_f372,
            0xa54f_f53a,
            0x510e_527f,
            0x9b05_688c,
            0x1f83_d9ab,
            0x5be0_cd19,
        ];
        let mut blocks_a = [[0u8; 64]; 3];
        let mut blocks_b = [[0u8; 64]; 3];
        for (k, (a, b)) in blocks_a.iter_mut().zip(blocks_b.iter_mut()).enumerate() {
            for j in 0..64 {
                a[j] = (j * 7 + k * 13) as u8;
                b[j] = (j * 31 + k * 5 + 1) as u8;
            }
        }
        let (mut sa, mut sb) = (iv, iv);
        if !compress_x2(&mut sa, &mut sb, &blocks_a, &blocks_b) {
            return; // no SHA extensions here: nothing to compare
        }
        let (mut ra, mut rb) = (iv, iv);
        compress256(&mut ra, &blocks_a);
        compress256(&mut rb, &blocks_b);
        assert_eq!((sa, sb), (ra, rb));
    }
}
