//! Properties every entry point must have on any input, checked by the fuzz targets and by
//! `tests/corpus.rs` on every committed input. Each function panics on a violation; an input
//! the fixers refuse is fine, a panic, a hang or a changed audio byte is not.

use std::io::Cursor;

use crate::{audio_blocks, fix_mp4, fix_wav, fix_webm, mp4_duration_ms};

/// Panics naming the first differing byte (the files themselves are too long to print).
fn assert_same(a: &[u8], b: &[u8], what: &str) {
    if a != b {
        let at = a.iter().zip(b).position(|(x, y)| x != y).unwrap_or(a.len().min(b.len()));
        panic!("{what}: {} and {} bytes, first difference at byte {at}", a.len(), b.len());
    }
}

/// `fix_webm` either refuses the input or writes a file that has the same blocks, that
/// `audio_blocks` reads, and that fixing again leaves unchanged.
pub fn webm(data: &[u8]) {
    let blocks = audio_blocks(data);
    let mut out = Vec::new();
    let Ok(report) = fix_webm(Cursor::new(data), &mut out) else {
        return;
    };
    assert_eq!(report.output_bytes, out.len() as u64);
    let fixed_blocks = audio_blocks(&out[..]).expect("the fixed file reads back");
    assert_eq!(fixed_blocks.len(), report.blocks, "block count");
    if let Ok(blocks) = blocks {
        assert!(blocks == fixed_blocks, "blocks changed: {} before, {} after", blocks.len(), fixed_blocks.len());
    }
    let mut again = Vec::new();
    let report2 = fix_webm(Cursor::new(&out), &mut again).expect("the fixed file fixes again");
    assert_eq!(report2.duration_ms, report.duration_ms, "duration after a second fix");
    assert_same(&again, &out, "fixing the fixed WebM changed it");
}

/// `mp4_duration_ms` does not panic; `fix_mp4` (without and with a cut derived from the input)
/// either refuses or writes a file that fixes again to itself with the same duration.
pub fn mp4(data: &[u8]) {
    let _ = mp4_duration_ms(Cursor::new(data));
    let seed = data.iter().fold(0u64, |h, &b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    let span = seed % 3000..seed % 3000 + seed % 700;
    for cut in [&[][..], std::slice::from_ref(&span)] {
        let mut out = Vec::new();
        let Ok(report) = fix_mp4(Cursor::new(data), &mut out, cut) else {
            continue;
        };
        assert_eq!(report.output_bytes, out.len() as u64);
        let mut again = Vec::new();
        let report2 = fix_mp4(Cursor::new(&out), &mut again, &[]).expect("the fixed file fixes again");
        assert_eq!(report2.duration_ms, report.duration_ms, "duration after a second fix");
        assert_eq!(report2.samples, report.samples, "samples after a second fix");
        assert_same(&again, &out, "fixing the fixed MP4 changed it");
        assert_eq!(mp4_duration_ms(Cursor::new(&out)).unwrap_or(0), report.duration_ms, "reader disagrees");
    }
}

/// `fix_wav` either refuses the input or writes a WAV that hound reads back with every whole
/// sample after the header, whose duration is the sample count's, and that fixing again
/// leaves unchanged.
pub fn wav(data: &[u8]) {
    let mut out = Cursor::new(Vec::new());
    let Ok(report) = fix_wav(Cursor::new(data), data.len() as u64, &mut out) else {
        return;
    };
    let out = out.into_inner();
    assert_eq!(report.output_bytes, out.len() as u64);
    let reader = hound::WavReader::new(Cursor::new(&out)).expect("hound reads the fixed WAV");
    assert_eq!(u64::from(reader.duration()), report.samples, "sample count");
    let samples: Vec<i16> = reader.into_samples().map(|s| s.expect("a sample")).collect();
    let sent: Vec<i16> = data[44..].chunks_exact(2).map(|p| i16::from_le_bytes([p[0], p[1]])).collect();
    assert!(samples == sent, "samples changed");
    let mut again = Cursor::new(Vec::new());
    let report2 = fix_wav(Cursor::new(&out), out.len() as u64, &mut again).expect("the fixed WAV fixes again");
    assert_eq!(report2.duration_ms, report.duration_ms, "duration after a second fix");
    assert_same(&again.into_inner(), &out, "fixing the fixed WAV changed it");
}
