//! The MP4 fix and reader on WebKitGTK's real recordings and on synthetic files; results
//! checked with mp4-atom (an independent reader) and ffmpeg.
// Cuts are lists of spans; a list of one span is what this lint takes for a mistake.
#![allow(clippy::single_range_in_vec_init)]

mod common;

use std::io::Cursor;
use std::ops::Range;

use audiobook_media::{
    ContainerKind, FixOptions, MediaError, Mp4FixReport, fix_mp4, fix_recording, mp4_duration_ms, sniff,
};
use common::mp4::{self as m, Facts, full, mp4box};

const AAC_FRAME: u64 = 1024;
const RATE: u64 = 44_100;

fn fix(input: &[u8], cut: &[Range<u64>]) -> (Vec<u8>, Mp4FixReport) {
    let mut out = Vec::new();
    let report = fix_mp4(Cursor::new(input), &mut out, cut).expect("fix_mp4");
    assert_eq!(report.output_bytes, out.len() as u64);
    (out, report)
}

fn ms(ticks: u64) -> u64 {
    (ticks * 1000 + RATE / 2) / RATE
}

/// The structure every fixed file has: one ftyp, moov, sidx, moof/mdat pairs; headers saying
/// the samples' duration; contiguous time from 0; a sidx that leads from moof to moof.
fn check_fixed(out: &[u8], report: &Mp4FixReport) -> Facts {
    let f = m::read(out);
    let n = report.fragments;
    let mut expected = vec!["ftyp", "moov"];
    if n > 0 {
        expected.push("sidx");
    }
    for _ in 0..n {
        expected.extend(["moof", "mdat"]);
    }
    assert_eq!(f.order, expected);
    assert_eq!(f.stale_moofs, 0);
    assert_eq!(f.moofs.iter().map(|&(_, seq)| seq).collect::<Vec<_>>(), (1..=n as u32).collect::<Vec<_>>());
    assert_eq!(f.samples.len() as u64, report.samples);

    let ticks: u64 = f.samples.iter().map(|s| u64::from(s.duration)).sum();
    let moov = f.moov.as_ref().unwrap();
    let movie = (ticks * u64::from(moov.mvhd.timescale) + RATE / 2) / RATE;
    assert_eq!(m::durations(moov), (movie, movie, ticks, Some(movie)));
    assert_eq!(report.duration_ms, ms(ticks));
    let mut time = 0;
    for s in &f.samples {
        assert_eq!(s.time, time, "contiguous timeline from 0");
        time += u64::from(s.duration);
    }
    assert_eq!(mp4_duration_ms(Cursor::new(out)), Some(report.duration_ms).filter(|&d| d > 0));

    if n > 0 {
        let sidx = f.sidx.as_ref().unwrap();
        let tops = m::top_boxes(out);
        let sidx_end = tops.iter().find(|b| b.0 == "sidx").unwrap().2;
        assert_eq!(sidx.timescale, RATE as u32);
        assert_eq!(sidx.earliest_presentation_time, 0);
        assert_eq!(sidx.first_offset, 0);
        assert_eq!(sidx.references.len(), n);
        let mut at = sidx_end;
        let mut t = 0u64;
        for (r, &(moof_at, _)) in sidx.references.iter().zip(&f.moofs) {
            assert_eq!(at, moof_at, "sidx sizes lead from one moof to the next");
            assert!(r.starts_with_sap && r.sap_type == 1 && !r.reference_type);
            let first = f.samples.iter().find(|s| s.end > moof_at).unwrap();
            assert_eq!(first.time, t, "sidx durations add up to each fragment's start");
            at += r.referenced_size as usize;
            t += u64::from(r.subsegment_duration);
        }
        assert_eq!(at, out.len());
        assert_eq!(t, ticks);
    }
    f
}

struct WebKitFixture {
    name: &'static str,
    samples: usize,
    fragments: usize,
    stale_moofs: usize,
}

const WEBKIT: [WebKitFixture; 2] = [
    WebKitFixture { name: "webkitgtk-aac-5s.m4a", samples: 212, fragments: 5, stale_moofs: 1 },
    WebKitFixture { name: "webkitgtk-aac-pause.m4a", samples: 236, fragments: 6, stale_moofs: 2 },
];

#[test]
fn webkit_recordings_get_their_duration_and_keep_every_sample() {
    for fx in &WEBKIT {
        let input = common::data(fx.name);
        assert_eq!(sniff(&input), ContainerKind::Mp4);
        let before = m::read(&input);
        assert_eq!((before.ftyps, before.stale_moofs), (2, fx.stale_moofs), "{}: the quirks are there", fx.name);
        assert_eq!(m::durations(before.moov.as_ref().unwrap()), (0, 0, 0, Some(0)));
        assert_eq!(before.samples.first().unwrap().time, 1, "tfdt starts at 1");

        let (out, report) = fix(&input, &[]);
        println!("{}: {report:?}", fx.name);
        let expected_ms = ms(fx.samples as u64 * AAC_FRAME);
        assert_eq!(report.duration_ms, expected_ms, "{}", fx.name);
        assert_eq!(report.samples, fx.samples as u64);
        assert_eq!(report.fragments, fx.fragments);
        assert_eq!((report.dropped_moofs, report.dropped_ftyps), (fx.stale_moofs, 1));
        assert_eq!((report.dropped_tail_bytes, report.removed_ms), (0, 0));
        let after = check_fixed(&out, &report);

        // Every sample byte for byte, in order; the ftyp and the moov's other bytes unchanged.
        assert_eq!(after.samples.len(), fx.samples);
        assert!(
            after
                .samples
                .iter()
                .map(|s| (&s.data, s.duration))
                .eq(before.samples.iter().map(|s| (&s.data, s.duration)))
        );
        assert_eq!(out[..32], input[..32]);
        let moov_in = &input[64..817];
        let moov_out = &out[32..32 + moov_in.len()];
        let differing: Vec<usize> = (0..moov_in.len()).filter(|&i| moov_in[i] != moov_out[i]).collect();
        assert!(differing.len() <= 4 * 8, "only the duration fields change: {differing:?}");

        // The reader agrees on the unfixed file too: stale copies are not counted.
        assert_eq!(mp4_duration_ms(Cursor::new(&input)), Some(expected_ms));

        // 212 samples x 1024 / 44100 = 4.923 s for the 5 s take.
        if fx.name == "webkitgtk-aac-5s.m4a" {
            assert_eq!(report.duration_ms, 4923);
        }
    }
}

#[test]
fn ffmpeg_decodes_the_fixed_files_without_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    for fx in &WEBKIT {
        let input = common::data_path(fx.name);
        let fixed = dir.path().join(fx.name);
        let outcome = fix_recording(&input, &fixed, &FixOptions::default()).unwrap();
        assert!(outcome.written);
        let (Some(before), Some(after)) = (common::tools::ffmpeg_decode(&input), common::tools::ffmpeg_decode(&fixed))
        else {
            return;
        };
        let expected = fx.samples as f64 * AAC_FRAME as f64 / RATE as f64;
        println!(
            "{}: before: {} ffmpeg lines, {:.3} s decoded; after: {} lines, {:.3} s decoded (audio {expected:.3} s, duration_ms {})",
            fx.name,
            before.warnings.len(),
            before.seconds,
            after.warnings.len(),
            after.seconds,
            outcome.duration_ms
        );
        assert!(!before.warnings.is_empty(), "the unfixed file makes ffmpeg complain");
        assert!(after.warnings.is_empty(), "{}: {:?}", fx.name, after.warnings);
        assert!((after.seconds - expected).abs() < 0.03, "{}: decoded {} s", fx.name, after.seconds);
    }
}

#[test]
fn fixing_twice_changes_nothing() {
    for fx in &WEBKIT {
        let (once, r1) = fix(&common::data(fx.name), &[]);
        let (twice, r2) = fix(&once, &[]);
        assert_eq!(
            (r2.duration_ms, r2.samples, r2.dropped_moofs, r2.dropped_ftyps),
            (r1.duration_ms, r1.samples, 0, 0)
        );
        assert_eq!(once, twice, "{}: the fixed file is a fixed point", fx.name);
    }
}

/// The page's own pause()/resume() times, from the fixture's sidecar JSON.
fn pause_spans(name: &str) -> (Vec<Range<u64>>, u64) {
    let json: serde_json::Value = serde_json::from_slice(&common::data(&format!("{name}.json"))).expect("sidecar JSON");
    let t = &json["timeline_ms"];
    let pauses = t["pause"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap());
    let resumes = t["resume"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap());
    (pauses.zip(resumes).map(|(p, r)| p..r).collect(), json["recorded_ms"].as_u64().unwrap())
}

#[test]
fn cutting_the_paused_span_out_of_a_webkit_take() {
    let name = "webkitgtk-aac-pause.m4a";
    let (spans, recorded_ms) = pause_spans(name);
    assert_eq!(spans, [2068..3579]);
    let input = common::data(name);
    let before = m::read(&input);
    let (out, report) = fix(&input, &spans);
    println!("{name} cut {spans:?}: {report:?}");
    let after = check_fixed(&out, &report);

    // A sample goes when it starts inside the span (times from the first sample's start).
    let first = before.samples[0].time;
    let span_ticks = (2068 * RATE / 1000)..(3579 * RATE / 1000);
    let kept: Vec<&m::Sample> = before.samples.iter().filter(|s| !span_ticks.contains(&(s.time - first))).collect();
    assert_eq!(before.samples.len() - kept.len(), 65);
    assert!(after.samples.iter().map(|s| &s.data).eq(kept.iter().map(|s| &s.data)), "the other samples, byte for byte");
    assert_eq!(report.duration_ms, ms(kept.len() as u64 * AAC_FRAME));
    assert_eq!(report.duration_ms, 3971);
    assert_eq!(report.removed_ms, 5480 - 3971);
    let error = report.duration_ms.abs_diff(recorded_ms);
    println!("recorded {recorded_ms} ms, saved {} ms: {error} ms apart", report.duration_ms);
    assert!(error <= 300, "saved duration within 0.3 s of the time recorded");

    // Cutting the fixed file again by nothing keeps it; the fixed-and-cut file is a fixed point.
    let (twice, _) = fix(&out, &[]);
    assert_eq!(twice, out);

    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("in.m4a"), dir.path().join("out.m4a"));
    std::fs::write(&src, &input).unwrap();
    let outcome = fix_recording(&src, &dst, &FixOptions { cut_ms: spans }).unwrap();
    assert_eq!((outcome.duration_ms, outcome.removed_ms), (3971, 1509));
    assert_eq!(std::fs::read(&dst).unwrap(), out);
    if let Some(decoded) = common::tools::ffmpeg_decode(&dst) {
        println!("cut file: {:.3} s decoded, {} ffmpeg lines", decoded.seconds, decoded.warnings.len());
        assert!(decoded.warnings.is_empty(), "{:?}", decoded.warnings);
        assert!((decoded.seconds - 3.971).abs() < 0.03);
    }
}

#[test]
fn cuts_at_the_edges() {
    let input = common::data("webkitgtk-aac-5s.m4a");
    let all = m::read(&input).samples;
    let cases: [(&str, Vec<Range<u64>>, usize); 6] = [
        ("nothing", vec![5..5, Range { start: 9, end: 3 }], 212),
        ("everything", vec![0..10_000], 0),
        ("the first sample", vec![0..1], 211),
        ("the start", vec![0..1000], 212 - 44),
        ("the end, overlapping spans", vec![4000..4500, 4400..9000], 212 - (212 - 173)),
        ("a whole fragment", vec![998..1996], 212 - 43),
    ];
    for (what, cut, expected) in cases {
        let (out, report) = fix(&input, &cut);
        assert_eq!(report.samples as usize, expected, "{what}: {report:?}");
        let after = check_fixed(&out, &report);
        // Kept samples are a subsequence of the input's, in order.
        let mut it = all.iter();
        assert!(after.samples.iter().all(|s| it.any(|a| a.data == s.data)), "{what}");
        if expected == 0 {
            assert_eq!((report.duration_ms, report.fragments), (0, 0));
        }
        if what == "a whole fragment" {
            assert_eq!(report.fragments, 4);
        }
    }
}

#[test]
fn cut_off_takes_keep_the_complete_samples() {
    let input = common::data("webkitgtk-aac-5s.m4a");
    let full_samples = m::read(&input).samples;
    let tops = m::top_boxes(&input);
    let mdat3 = tops.iter().filter(|b| b.0 == "mdat").nth(2).unwrap();
    let moof4 = tops.iter().filter(|b| b.0 == "moof").nth(3).unwrap();
    let cases = [
        ("inside an mdat", mdat3.1 + 8 + 1000),
        ("inside an mdat's header", mdat3.1 + 5),
        ("at a box boundary", moof4.1),
        ("inside a moof", moof4.1 + 100),
        ("inside the stale moof copy", tops[tops.len() - 2].1 + 10),
        ("one byte before the end", input.len() - 1),
        ("right after the moov", 817),
    ];
    for (what, cut) in cases {
        let (out, report) = fix(&input[..cut], &[]);
        let after = check_fixed(&out, &report);
        // Exactly the samples whose moof, mdat header and bytes are all there.
        let expected: Vec<&Vec<u8>> = full_samples
            .iter()
            .filter(|s| s.moof_end <= cut && s.mdat_start + 8 <= cut && s.end <= cut)
            .map(|s| &s.data)
            .collect();
        println!("{what} (cut at {cut}): kept {} samples, {report:?}", after.samples.len());
        assert!(after.samples.iter().map(|s| &s.data).eq(expected.iter().copied()), "{what}");
        if what == "one byte before the end" {
            assert_eq!(after.samples.len(), 211, "the last sample lost one byte, so it goes");
        }
        if what == "right after the moov" {
            assert_eq!((report.samples, report.fragments, report.duration_ms), (0, 0, 0));
        }
    }
    // Cut inside the moov: nothing to keep.
    assert!(matches!(fix_mp4(Cursor::new(&input[..500]), &mut Vec::new(), &[]), Err(MediaError::NotMp4(_))));
}

fn samples(n: usize, size: usize) -> Vec<(u32, Vec<u8>)> {
    (0..n).map(|i| (1024, (0..size).map(|j| (i * 7 + j) as u8).collect())).collect()
}

#[test]
fn synthetic_fragments_in_the_webkit_layout() {
    let init = m::webkit_init();
    let file = [init.clone(), m::fragment(1, 0, &samples(10, 50)), m::fragment(2, 10_240, &samples(5, 60))].concat();
    let (out, report) = fix(&file, &[]);
    assert_eq!((report.samples, report.fragments, report.duration_ms), (15, 2, ms(15 * 1024)));
    let after = check_fixed(&out, &report);
    assert!(after.samples.iter().map(|s| &s.data).eq(m::read(&file).samples.iter().map(|s| &s.data)));

    // A gap in tfdt is closed: the output timeline is the sum of the durations.
    let gap = [init.clone(), m::fragment(1, 0, &samples(3, 10)), m::fragment(2, 999_999, &samples(3, 10))].concat();
    let (out, report) = fix(&gap, &[]);
    assert_eq!(report.duration_ms, ms(6 * 1024));
    check_fixed(&out, &report);

    // A moof whose data lies outside its mdat and is not a stale copy: refused.
    let mut broken = [init.clone(), m::fragment(1, 0, &samples(3, 10))].concat();
    let trun_offset_at = init.len() + 8 + 16 + 8 + 16 + 16 + 8 + 8;
    broken[trun_offset_at..trun_offset_at + 4].copy_from_slice(&8u32.to_be_bytes());
    assert!(matches!(fix_mp4(Cursor::new(&broken), &mut Vec::new(), &[]), Err(MediaError::NotMp4(_))));

    // A sample of 0 bytes: refused (every sample must cost input bytes).
    let empty = [init.clone(), m::fragment(1, 0, &[(1024, vec![1]), (1024, vec![])])].concat();
    assert!(matches!(fix_mp4(Cursor::new(&empty), &mut Vec::new(), &[]), Err(MediaError::NotMp4(_))));

    // Only the init segment (a take stopped before its first fragment): a valid empty file.
    let (out, report) = fix(&init, &[]);
    assert_eq!((report.samples, report.fragments, report.duration_ms), (0, 0, 0));
    check_fixed(&out, &report);
}

/// A moov like WebKit's with trex defaults, and fragments that take durations and sizes from
/// tfhd or trex, spread over two truns, with an absolute base data offset.
#[test]
fn defaults_base_offsets_and_several_runs() {
    let init = m::webkit_init();
    // trex: track 1, sample description 1, duration 1024, size 20, flags 0.
    let trex = full(0, 0, &[1u32, 1, 1024, 20, 0].iter().flat_map(|v| v.to_be_bytes()).collect::<Vec<_>>());
    let ftyp_len = 32;
    let moov = m::replace_body(&init[ftyp_len..], &[b"moov", b"mvex", b"trex"], &trex);
    let init = [&init[..ftyp_len], &moov].concat();

    // Fragment: tfhd with base_data_offset (absolute) and default size 20; two truns without
    // per-sample fields except a data offset on the first.
    let build = |moof_at: usize| {
        let tfhd = mp4box(
            b"tfhd",
            &full(
                0,
                0x1 | 0x10,
                &[&1u32.to_be_bytes()[..], &(moof_at as u64).to_be_bytes(), &20u32.to_be_bytes()].concat(),
            ),
        );
        let trun = |count: u32, offset: Option<u32>| {
            let mut body = count.to_be_bytes().to_vec();
            if let Some(o) = offset {
                body.extend_from_slice(&o.to_be_bytes());
            }
            mp4box(b"trun", &full(0, u32::from(offset.is_some()), &body))
        };
        let traf_len = 8 + tfhd.len() + (8 + 12) + (8 + 8);
        let moof_len = 8 + 16 + traf_len;
        let traf = [tfhd, trun(3, Some(moof_len as u32 + 8)), trun(2, None)].concat();
        let moof =
            mp4box(b"moof", &[mp4box(b"mfhd", &full(0, 0, &1u32.to_be_bytes())), mp4box(b"traf", &traf)].concat());
        assert_eq!(moof.len(), moof_len);
        let data: Vec<u8> = (0..100).map(|i| i as u8).collect();
        [moof, mp4box(b"mdat", &data)].concat()
    };
    let file = [init.clone(), build(init.len())].concat();
    let (out, report) = fix(&file, &[]);
    assert_eq!((report.samples, report.duration_ms), (5, ms(5 * 1024)));
    let after = check_fixed(&out, &report);
    let data: Vec<u8> = after.samples.iter().flat_map(|s| s.data.clone()).collect();
    assert_eq!(data, (0..100).map(|i| i as u8).collect::<Vec<_>>());
    // Cut the second sample: the first run splits around it, the second run is untouched.
    let (out, report) = fix(&file, &[23..46]);
    assert_eq!(report.samples, 4);
    let after = check_fixed(&out, &report);
    let data: Vec<u8> = after.samples.iter().flat_map(|s| s.data.clone()).collect();
    assert_eq!(data, [&(0..20).collect::<Vec<u8>>()[..], &(40..100).collect::<Vec<u8>>()].concat());
}

#[test]
fn plain_and_foreign_mp4s() {
    // A plain MP4 (no mvex): the reader uses mvhd; the fixer has nothing to fix.
    let mvhd = |version: u8, timescale: u32, duration: u64| {
        let times = if version == 1 {
            [&[0u8; 16][..], &timescale.to_be_bytes(), &duration.to_be_bytes()].concat()
        } else {
            [&[0u8; 8][..], &timescale.to_be_bytes(), &(duration as u32).to_be_bytes()].concat()
        };
        mp4box(b"mvhd", &full(version, 0, &[times, vec![0u8; 80]].concat()))
    };
    let ftyp = mp4box(b"ftyp", b"M4A \0\0\0\0M4A mp42isom");
    let plain = [ftyp.clone(), mp4box(b"moov", &mvhd(0, 1000, 5000)), mp4box(b"mdat", &[0u8; 64])].concat();
    assert_eq!(mp4_duration_ms(Cursor::new(&plain)), Some(5000));
    assert!(matches!(fix_mp4(Cursor::new(&plain), &mut Vec::new(), &[]), Err(MediaError::NotMp4(_))));
    // Version 1 mvhd, timescale 600, 7.5 s; mdat before moov.
    let v1 = [ftyp.clone(), mp4box(b"mdat", &[0u8; 16]), mp4box(b"moov", &mvhd(1, 600, 4500))].concat();
    assert_eq!(mp4_duration_ms(Cursor::new(&v1)), Some(7500));
    // No duration anywhere, or not an MP4 at all.
    let none = [ftyp, mp4box(b"moov", &mvhd(0, 1000, 0))].concat();
    assert_eq!(mp4_duration_ms(Cursor::new(&none)), None);
    assert_eq!(mp4_duration_ms(Cursor::new(b"")), None);
    assert_eq!(mp4_duration_ms(Cursor::new(b"not an mp4 file at all")), None);
    assert_eq!(mp4_duration_ms(Cursor::new(common::data("mediarecorder-opus-3s.webm"))), None);
}

/// The panics of the old reader (`body[0]` on an empty mehd / tkhd) and their neighbours:
/// every entry point returns instead.
#[test]
fn empty_and_short_boxes_in_a_real_moov() {
    let input = common::data("webkitgtk-aac-5s.m4a");
    let paths: [&[&[u8; 4]]; 6] = [
        &[b"moov", b"mvex", b"mehd"],
        &[b"moov", b"trak", b"tkhd"],
        &[b"moov", b"mvhd"],
        &[b"moov", b"trak", b"mdia", b"mdhd"],
        &[b"moov", b"mvex", b"trex"],
        &[b"moov", b"trak"],
    ];
    for path in paths {
        for body_len in [0usize, 1, 3, 4, 7] {
            let body: Vec<u8> = vec![1; body_len];
            let damaged = m::replace_body(&input, path, &body);
            let what = format!("{:?} with {body_len} bytes", path.last().map(|k| String::from_utf8_lossy(&k[..])));
            let duration = mp4_duration_ms(Cursor::new(&damaged));
            let fixed = fix_mp4(Cursor::new(&damaged), &mut Vec::new(), &[]);
            println!("{what}: reader {duration:?}, fixer {:?}", fixed.as_ref().err());
            assert!(fixed.is_err(), "{what}");
        }
    }
}
