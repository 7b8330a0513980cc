//! Every committed input through every entry point, checked with the properties the fuzz
//! targets check (`audiobook_media::invariants`): the real fixtures in tests/data, the
//! crafted seeds and every input a fuzz run found in tests/corpus (see its README), and every
//! prefix of the fixtures at a stride (interrupted takes).
//!
//! The crafted seeds are built by [`crafted`]; `AUDIOBOOK_WRITE_CORPUS=1 cargo test -p
//! audiobook-media --test corpus` writes them again.

mod common;

use std::path::{Path, PathBuf};

use audiobook_media::invariants;

fn corpus_dir(kind: &str) -> PathBuf {
    [env!("CARGO_MANIFEST_DIR"), "tests", "corpus", kind].iter().collect()
}

/// Media files of a directory (README and JSON sidecars skipped).
fn inputs(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| !matches!(p.extension().and_then(|e| e.to_str()), Some("md" | "json")))
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .collect();
    out.sort();
    out
}

fn check_all(name: &str, data: &[u8]) {
    let run = std::panic::catch_unwind(|| {
        invariants::webm(data);
        invariants::mp4(data);
        invariants::wav(data);
    });
    if let Err(e) = run {
        let msg = e.downcast_ref::<String>().cloned().or(e.downcast_ref::<&str>().map(|s| s.to_string()));
        panic!("{name}: {}", msg.unwrap_or_default());
    }
}

#[test]
fn every_committed_input_keeps_the_invariants() {
    let mut count = 0;
    for dir in [common::data_path(""), corpus_dir("webm"), corpus_dir("mp4"), corpus_dir("wav")] {
        for (name, data) in inputs(&dir) {
            check_all(&name, &data);
            count += 1;
        }
    }
    println!("{count} inputs checked");
    assert!(count >= 7 + crafted().len(), "the fixtures and the crafted seeds are all there");
}

#[test]
fn prefixes_of_the_fixtures_keep_the_invariants() {
    for (name, data) in inputs(&common::data_path("")) {
        for cut in (0..data.len()).step_by(1999) {
            check_all(&format!("{name}[..{cut}]"), &data[..cut]);
        }
    }
}

#[test]
fn crafted_seeds_are_committed() {
    let write = std::env::var_os("AUDIOBOOK_WRITE_CORPUS").is_some();
    for (path, data) in crafted() {
        let file = corpus_dir(path);
        if write {
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(&file, &data).unwrap();
        }
        let committed = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert!(committed == data, "{path} differs from what crafted() builds");
    }
}

/// An EBML element: ID bytes, a 1-byte or 8-byte size, the body.
fn el(id: &[u8], body: &[u8]) -> Vec<u8> {
    let size = if body.len() < 127 {
        vec![0x80 | body.len() as u8]
    } else {
        let mut s = (body.len() as u64).to_be_bytes();
        s[0] = 0x01;
        s.to_vec()
    };
    [id, &size, body].concat()
}

/// Seeds for parts of the format the browsers' files do not use, plus cut-off takes.
fn crafted() -> Vec<(&'static str, Vec<u8>)> {
    use common::mp4::{fragment, full, mp4box, webkit_init};

    let chromium = common::data("mediarecorder-opus-3s.webm");
    // Two tracks (Opus 1, another codec 2), BlockGroups with BlockDuration, a laced block,
    // a block of undeclared track 9, a Void and a CRC-32 in Info, Tags, Segment of known size.
    let ebml = el(&[0x1A, 0x45, 0xDF, 0xA3], &[el(&[0x42, 0x82], b"webm"), el(&[0x42, 0xF3], &[8])].concat());
    let info = el(
        &[0x15, 0x49, 0xA9, 0x66],
        &[el(&[0x2A, 0xD7, 0xB1], &[0x0F, 0x42, 0x40]), el(&[0xEC], &[0; 3]), el(&[0xBF], &[1, 2, 3, 4])].concat(),
    );
    let track = |n: u8, codec: &[u8]| el(&[0xAE], &[el(&[0xD7], &[n]), el(&[0x83], &[2]), el(&[0x86], codec)].concat());
    let tracks = el(&[0x16, 0x54, 0xAE, 0x6B], &[track(1, b"A_OPUS"), track(2, b"A_VORBIS")].concat());
    let simple = |track: u8, rel: i16, flags: u8, payload: &[u8]| {
        el(&[0xA3], &[&[0x80 | track][..], &rel.to_be_bytes(), &[flags], payload].concat())
    };
    let group = |track: u8, rel: i16, duration: u8| {
        el(
            &[0xA0],
            &[
                el(&[0xA1], &[&[0x80 | track][..], &rel.to_be_bytes(), &[0], &[0xF8, 1, 2]].concat()),
                el(&[0x9B], &[duration]),
            ]
            .concat(),
        )
    };
    let cluster = |tc: u8, blocks: Vec<u8>| el(&[0x1F, 0x43, 0xB6, 0x75], &[el(&[0xE7], &[tc]), blocks].concat());
    let clusters = [
        cluster(0, [simple(1, 0, 0x80, &[0xF8, 9]), group(2, 10, 30), simple(9, 20, 0x80, &[1])].concat()),
        cluster(100, [simple(1, 0, 0x82, &[1, 5, 0xF8, 1, 2, 3, 4, 5, 6, 7]), group(1, 20, 40)].concat()),
    ]
    .concat();
    let tags = el(&[0x12, 0x54, 0xC3, 0x67], &el(&[0x73, 0x73], &el(&[0x67, 0xC8], &el(&[0x45, 0xA3], b"TITLE"))));
    let segment = el(&[0x18, 0x53, 0x80, 0x67], &[info, tracks, clusters, tags].concat());
    let two_tracks = [ebml, segment].concat();

    let webkit = common::data("webkitgtk-aac-5s.m4a");
    let samples = |n: usize| (0..n).map(|i| (1024u32, vec![i as u8; 20 + i])).collect::<Vec<_>>();
    let init = webkit_init();
    // Durations and sizes from tfhd defaults, an absolute base data offset, two truns.
    let tfhd = mp4box(
        b"tfhd",
        &full(
            0,
            0x1 | 0x8 | 0x10,
            &[
                &1u32.to_be_bytes()[..],
                &(init.len() as u64).to_be_bytes(),
                &1024u32.to_be_bytes(),
                &20u32.to_be_bytes(),
            ]
            .concat(),
        ),
    );
    let trun = |count: u32, offset: Option<u32>| {
        let mut body = count.to_be_bytes().to_vec();
        body.extend(offset.map(|o| o.to_be_bytes()).into_iter().flatten());
        mp4box(b"trun", &full(0, u32::from(offset.is_some()), &body))
    };
    let moof_len = 8 + 16 + 8 + tfhd.len() + 20 + 16;
    let traf = [tfhd, trun(3, Some(moof_len as u32 + 8)), trun(2, None)].concat();
    let moof = mp4box(b"moof", &[mp4box(b"mfhd", &full(0, 0, &1u32.to_be_bytes())), mp4box(b"traf", &traf)].concat());
    let defaults = [init.clone(), moof, mp4box(b"mdat", &[7u8; 100])].concat();

    vec![
        ("webm/crafted-known-sizes-void-tags.webm", common::with_known_sizes_and_tags(&chromium)),
        ("webm/crafted-two-tracks-groups-lacing.webm", two_tracks),
        ("webm/crafted-cut-mid-block.webm", chromium[..20_000].to_vec()),
        (
            "mp4/crafted-fragments.m4a",
            [init.clone(), fragment(1, 0, &samples(5)), fragment(2, 5120, &samples(3))].concat(),
        ),
        ("mp4/crafted-defaults-base-offset.m4a", defaults),
        ("mp4/crafted-cut-mid-mdat.m4a", webkit[..19_551].to_vec()),
        ("mp4/crafted-stale-copy-last.m4a", webkit[..35_643].to_vec()),
        ("wav/crafted-lossless-tone.wav", wav_take(48_000, 4_800, &[])),
        ("wav/crafted-lossless-half-sample.wav", wav_take(44_100, 441, &[0x7F])),
        ("wav/crafted-lossless-header-only.wav", wav_take(16_000, 0, &[])),
        ("wav/crafted-lossless-stereo.wav", {
            let mut t = wav_take(48_000, 100, &[]);
            t[22] = 2;
            t
        }),
    ]
}

/// A lossless take as the server spools it: the wire's header, `n` samples of a ramp, `tail`.
fn wav_take(rate: u32, n: usize, tail: &[u8]) -> Vec<u8> {
    let mut t = audiobook_wire::lossless::stream_header(rate).to_vec();
    t.extend((0..n).flat_map(|i| ((i as i32 * 97 % 65_536) - 32_768).to_le_bytes()[..2].to_vec()));
    t.extend_from_slice(tail);
    t
}
