//! Opus packet duration from the TOC byte (RFC 6716, section 3.1).
//!
//! The duration of the last block decides the file's Duration, and Chromium's blocks are
//! 60 ms (TOC 0xFB: CELT, 20 ms frames, code 3 with 3 frames), so it must come from the
//! packet, not from a constant.

/// Duration of one Opus packet in nanoseconds, from its first bytes (the TOC byte and, for
/// code 3, the frame count byte). `None` if the packet is too short to tell.
pub fn packet_duration_ns(packet: &[u8]) -> Option<u64> {
    let toc = *packet.first()?;
    let frames = match toc & 0x03 {
        0 => 1,
        1 | 2 => 2,
        _ => (*packet.get(1)? & 0x3F) as u64,
    };
    Some(frames * frame_duration_ns(toc))
}

/// Duration of one frame for the TOC's configuration number (toc >> 3).
pub fn frame_duration_ns(toc: u8) -> u64 {
    const MS: u64 = 1_000_000;
    let config = toc >> 3;
    match config {
        // SILK-only: 10, 20, 40, 60 ms.
        0..=11 => [10 * MS, 20 * MS, 40 * MS, 60 * MS][(config % 4) as usize],
        // Hybrid: 10, 20 ms.
        12..=15 => [10 * MS, 20 * MS][(config % 2) as usize],
        // CELT-only: 2.5, 5, 10, 20 ms.
        _ => [2_500_000, 5 * MS, 10 * MS, 20 * MS][(config % 4) as usize],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn frame_durations_for_every_config() {
        let silk = [10, 20, 40, 60];
        let hybrid = [10, 20];
        for config in 0u8..32 {
            let toc = config << 3;
            let expected = match config {
                0..=11 => silk[(config % 4) as usize] * MS,
                12..=15 => hybrid[(config % 2) as usize] * MS,
                _ => [2_500_000, 5 * MS, 10 * MS, 20 * MS][(config % 4) as usize],
            };
            assert_eq!(frame_duration_ns(toc), expected, "config {config}");
        }
        assert_eq!(frame_duration_ns(16 << 3), 2_500_000);
        assert_eq!(frame_duration_ns(3 << 3), 60 * MS);
        assert_eq!(frame_duration_ns(13 << 3), 20 * MS);
    }

    #[test]
    fn packet_durations_by_count_code() {
        // Chromium's packets: config 31 (CELT FB 20 ms), code 3, 3 frames (0x83: VBR flag + 3).
        assert_eq!(packet_duration_ns(&[0xFB, 0x83]), Some(60 * MS));
        // Code 0: one frame.
        assert_eq!(packet_duration_ns(&[0xF8]), Some(20 * MS));
        // Code 1 and 2: two frames.
        assert_eq!(packet_duration_ns(&[0xF9]), Some(40 * MS));
        assert_eq!(packet_duration_ns(&[0x02]), Some(20 * MS)); // SILK 10 ms, 2 frames
        // Code 3 with the frame count in the low 6 bits of the next byte.
        assert_eq!(packet_duration_ns(&[0x83, 0x06]), Some(6 * 2_500_000)); // CELT 2.5 ms x 6
        assert_eq!(packet_duration_ns(&[0x1B, 0x02]), Some(120 * MS)); // SILK 60 ms x 2
        // Too short to tell.
        assert_eq!(packet_duration_ns(&[]), None);
        assert_eq!(packet_duration_ns(&[0xFB]), None);
    }
}
