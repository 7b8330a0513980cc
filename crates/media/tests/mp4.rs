//! mp4_duration_ms on small synthetic files: a plain MP4 (mvhd) and a fragmented one like
//! Safari's MediaRecorder writes (mvhd duration 0, durations in trun / tfhd / trex).

use std::io::Cursor;

use audiobook_media::{ContainerKind, mp4_duration_ms, sniff};

fn mp4box(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
    [&((body.len() + 8) as u32).to_be_bytes()[..], kind, body].concat()
}

fn full(version: u8, flags: u32, rest: &[u8]) -> Vec<u8> {
    let vf = ((version as u32) << 24) | flags;
    [&vf.to_be_bytes()[..], rest].concat()
}

fn ftyp() -> Vec<u8> {
    mp4box(b"ftyp", b"M4A \0\0\0\0M4A mp42isom")
}

fn mvhd_v0(timescale: u32, duration: u32) -> Vec<u8> {
    let mut rest = vec![0u8; 8]; // creation, modification
    rest.extend_from_slice(&timescale.to_be_bytes());
    rest.extend_from_slice(&duration.to_be_bytes());
    rest.extend_from_slice(&[0u8; 80]);
    mp4box(b"mvhd", &full(0, 0, &rest))
}

fn mvhd_v1(timescale: u32, duration: u64) -> Vec<u8> {
    let mut rest = vec![0u8; 16];
    rest.extend_from_slice(&timescale.to_be_bytes());
    rest.extend_from_slice(&duration.to_be_bytes());
    rest.extend_from_slice(&[0u8; 80]);
    mp4box(b"mvhd", &full(1, 0, &rest))
}

fn trak(track_id: u32, timescale: u32) -> Vec<u8> {
    let mut tkhd = vec![0u8; 8];
    tkhd.extend_from_slice(&track_id.to_be_bytes());
    tkhd.extend_from_slice(&[0u8; 68]);
    let mut mdhd = vec![0u8; 8];
    mdhd.extend_from_slice(&timescale.to_be_bytes());
    mdhd.extend_from_slice(&[0u8; 8]);
    let mdia = mp4box(b"mdia", &mp4box(b"mdhd", &full(0, 0, &mdhd)));
    mp4box(b"trak", &[mp4box(b"tkhd", &full(0, 3, &tkhd)), mdia].concat())
}

fn trex(track_id: u32, default_duration: u32) -> Vec<u8> {
    let rest = [track_id, 1, default_duration, 0, 0].iter().flat_map(|v| v.to_be_bytes()).collect::<Vec<_>>();
    mp4box(b"trex", &full(0, 0, &rest))
}

/// A moof with one traf: tfhd (optionally with a default duration) and a trun with either
/// per-sample durations or just a count.
fn moof(track_id: u32, tfhd_default: Option<u32>, samples: &[u32], per_sample: bool) -> Vec<u8> {
    let mut tfhd = track_id.to_be_bytes().to_vec();
    let tfhd_flags = if let Some(d) = tfhd_default {
        tfhd.extend_from_slice(&d.to_be_bytes());
        0x08
    } else {
        0
    };
    // data_offset present (0x1); per-sample duration (0x100) and size (0x200).
    let trun_flags = 0x1 | 0x200 | if per_sample { 0x100 } else { 0 };
    let mut trun = (samples.len() as u32).to_be_bytes().to_vec();
    trun.extend_from_slice(&0u32.to_be_bytes());
    for &d in samples {
        if per_sample {
            trun.extend_from_slice(&d.to_be_bytes());
        }
        trun.extend_from_slice(&100u32.to_be_bytes());
    }
    let traf = [
        mp4box(b"tfhd", &full(0, tfhd_flags, &tfhd)),
        mp4box(b"tfdt", &full(0, 0, &[0u8; 4])),
        mp4box(b"trun", &full(0, trun_flags, &trun)),
    ]
    .concat();
    mp4box(b"moof", &[mp4box(b"mfhd", &full(0, 0, &[0, 0, 0, 1])), mp4box(b"traf", &traf)].concat())
}

#[test]
fn plain_mp4_uses_mvhd() {
    let file = [ftyp(), mp4box(b"moov", &[mvhd_v0(1000, 5000), trak(1, 44100)].concat()), mp4box(b"mdat", &[0u8; 64])]
        .concat();
    assert_eq!(sniff(&file), ContainerKind::Mp4);
    assert_eq!(mp4_duration_ms(Cursor::new(&file)), Some(5000));

    // Version 1 mvhd, timescale 600, 7.5 s; mdat before moov.
    let file = [ftyp(), mp4box(b"mdat", &[0u8; 16]), mp4box(b"moov", &mvhd_v1(600, 4500))].concat();
    assert_eq!(mp4_duration_ms(Cursor::new(&file)), Some(7500));
}

#[test]
fn fragmented_mp4_sums_trun_durations() {
    // Safari-like: mvhd says 0; 48 kHz AAC, 1024-sample frames.
    let moov = mp4box(b"moov", &[mvhd_v0(1000, 0), trak(1, 48000), mp4box(b"mvex", &trex(1, 1024))].concat());
    let mdat = mp4box(b"mdat", &[0u8; 32]);
    let per_sample = [
        ftyp(),
        moov.clone(),
        moof(1, None, &[1024; 50], true),
        mdat.clone(),
        moof(1, None, &[1024; 47], true),
        mdat.clone(),
    ]
    .concat();
    // 97 * 1024 / 48000 s = 2069.33 ms
    assert_eq!(mp4_duration_ms(Cursor::new(&per_sample)), Some(2069));

    // Durations from tfhd's default, then from trex's default.
    let tfhd_default = [ftyp(), moov.clone(), moof(1, Some(960), &[0; 100], false), mdat.clone()].concat();
    assert_eq!(mp4_duration_ms(Cursor::new(&tfhd_default)), Some(2000));
    let trex_default = [ftyp(), moov, moof(1, None, &[0; 75], false), mdat].concat();
    assert_eq!(mp4_duration_ms(Cursor::new(&trex_default)), Some(1600));
}

#[test]
fn unknown_inputs_give_none() {
    assert_eq!(mp4_duration_ms(Cursor::new(b"")), None);
    assert_eq!(mp4_duration_ms(Cursor::new(b"not an mp4 file at all")), None);
    // An MP4 whose moov has no duration and no fragments.
    let file = [ftyp(), mp4box(b"moov", &mvhd_v0(1000, 0))].concat();
    assert_eq!(mp4_duration_ms(Cursor::new(&file)), None);
    // The WebM fixture is not an MP4.
    let webm = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/mediarecorder-opus-3s.webm")).unwrap();
    assert_eq!(mp4_duration_ms(Cursor::new(&webm)), None);
}
