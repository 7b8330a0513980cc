//! The deterministic pseudo-random audio each recorder sends: chunk `k` of
//! recorder `r` under seed `s` is always the same bytes, so a resumed take can
//! re-send a chunk and the verifier can regenerate the whole take without
//! keeping it in memory.

use bytes::Bytes;

/// SplitMix64: tiny, fast, good enough to make every byte count.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The bytes of chunk `k` (length `len`) of recorder `recorder`.
pub fn chunk(seed: u64, recorder: u64, k: u64, len: usize) -> Bytes {
    let mut state = seed ^ recorder.wrapping_mul(0xA24B_AED4_963E_E407) ^ k.wrapping_mul(0x9FB2_1C65_1E98_DF25);
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        let word = splitmix(&mut state).to_le_bytes();
        let take = (len - out.len()).min(8);
        out.extend_from_slice(&word[..take]);
    }
    if k == 0 && len > 0 {
        // Never let a take start like a container the server knows
        // (WebM's EBML magic is 1A 45 DF A3): this payload is opaque.
        out[0] = b'L';
    }
    Bytes::from(out)
}

/// Compares `body` with chunks `0..chunks` of the take; returns the offset of
/// the first differing byte, or of the end of the shorter one.
pub fn first_mismatch(body: &[u8], seed: u64, recorder: u64, chunks: u64, len: usize) -> Option<usize> {
    let mut offset = 0;
    for k in 0..chunks {
        let expected = chunk(seed, recorder, k, len);
        let Some(got) = body.get(offset..offset + len) else {
            let common = body.len().saturating_sub(offset);
            let at = expected[..common].iter().zip(&body[offset..]).position(|(a, b)| a != b);
            return Some(offset + at.unwrap_or(common));
        };
        if got != &expected[..] {
            let at = expected.iter().zip(got).position(|(a, b)| a != b).unwrap_or(0);
            return Some(offset + at);
        }
        offset += len;
    }
    (body.len() != offset).then_some(offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_deterministic_and_distinct() {
        assert_eq!(chunk(1, 2, 3, 100), chunk(1, 2, 3, 100));
        assert_ne!(chunk(1, 2, 3, 100), chunk(1, 2, 4, 100));
        assert_ne!(chunk(1, 2, 3, 100), chunk(1, 3, 3, 100));
        assert_eq!(chunk(1, 2, 3, 13).len(), 13);
        assert_eq!(chunk(9, 9, 0, 4)[0], b'L');
    }

    #[test]
    fn mismatch_is_located() {
        let mut body: Vec<u8> = (0..3).flat_map(|k| chunk(5, 7, k, 10).to_vec()).collect();
        assert_eq!(first_mismatch(&body, 5, 7, 3, 10), None);
        body[17] ^= 1;
        assert_eq!(first_mismatch(&body, 5, 7, 3, 10), Some(17));
        body[17] ^= 1;
        body.push(0);
        assert_eq!(first_mismatch(&body, 5, 7, 3, 10), Some(30));
        body.truncate(25);
        assert_eq!(first_mismatch(&body, 5, 7, 3, 10), Some(25));
    }
}
