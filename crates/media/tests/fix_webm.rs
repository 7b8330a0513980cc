mod common;

use std::io::Cursor;

use audiobook_media::{AudioBlock, ContainerKind, FixReport, MediaError, audio_blocks, fix_webm, fix_webm_file, sniff};
use common::{CLUSTER, CUES, FIXTURES, INFO, SEEK_HEAD, TAGS, VOID};
use matroska_demuxer::{Frame, MatroskaFile};
use sha2::{Digest, Sha256};

fn fix(input: &[u8]) -> (Vec<u8>, FixReport) {
    let mut out = Vec::new();
    let report = fix_webm(Cursor::new(input), &mut out).expect("fix_webm");
    assert_eq!(report.output_bytes, out.len() as u64);
    (out, report)
}

fn payload_sha(blocks: &[AudioBlock]) -> Vec<u8> {
    let mut h = Sha256::new();
    for b in blocks {
        h.update((b.payload.len() as u64).to_be_bytes());
        h.update(&b.payload);
    }
    h.finalize().to_vec()
}

/// Reads the output back with matroska-demuxer: Duration in TimecodeScale units and every
/// frame. Also checks that a seek through the Cues lands near its target.
fn demux(buf: &[u8]) -> (Option<f64>, Vec<Frame>) {
    let mut mkv = MatroskaFile::open(Cursor::new(buf)).expect("matroska-demuxer opens the output");
    assert_eq!(mkv.info().timestamp_scale().get(), 1_000_000);
    assert_eq!(mkv.tracks().len(), 1);
    assert_eq!(mkv.tracks()[0].codec_id(), "A_OPUS");
    let duration = mkv.info().duration();
    let mut frames = Vec::new();
    let mut f = Frame::default();
    while mkv.next_frame(&mut f).expect("next_frame") {
        frames.push(f.clone());
    }
    (duration, frames)
}

/// Every cue points exactly at a Cluster ID, with that cluster's timecode, one per cluster;
/// every cluster has a known size.
fn check_cues(out: &[u8], expected_clusters: usize, track: u64) {
    let file = common::parse(out);
    let clusters: Vec<_> = file.top.iter().filter(|e| e.id == CLUSTER).collect();
    assert_eq!(clusters.len(), expected_clusters);
    let cues = common::cues(out);
    assert_eq!(cues.len(), expected_clusters, "one CuePoint per cluster");
    let cues_at = file.top.iter().position(|e| e.id == CUES).expect("Cues element");
    let first_cluster = file.top.iter().position(|e| e.id == CLUSTER).unwrap();
    assert_eq!(cues_at + 1, first_cluster, "Cues sit right before the first Cluster");
    for (cue, cluster) in cues.iter().zip(&clusters) {
        let at = file.segment_data_start + cue.cluster_pos as usize;
        assert_eq!(out[at..at + 4], [0x1F, 0x43, 0xB6, 0x75], "cue at {at}");
        assert_eq!(at, cluster.start);
        let (id, ds, size) = common::header(out, cluster.data_start);
        assert_eq!(id, 0xE7);
        assert_eq!(cue.time, common::uint(&out[ds..ds + size.unwrap() as usize]));
        assert_eq!(cue.track, track);
        let (_, data_start, size) = common::header(out, cluster.start);
        assert_eq!(size, Some((cluster.end - data_start) as u64), "cluster at {} has its known size", cluster.start);
    }
    // The SeekHead points at Info and Cues too.
    for (id, pos) in common::seeks(out) {
        let at = file.segment_data_start + pos as usize;
        let (found, _, _) = common::header(out, at);
        assert_eq!(found, id, "SeekHead entry for 0x{id:X}");
    }
}

#[test]
fn fixtures_get_duration_cues_and_identical_blocks() {
    for fx in &FIXTURES {
        let input = common::data(fx.name);
        let (out, report) = fix(&input);
        println!("{}: {report:?}", fx.name);

        assert_eq!(report.duration_ms, fx.duration_ms, "{}", fx.name);
        assert_eq!(report.clusters, fx.clusters);
        assert_eq!(report.blocks, fx.packets);
        assert_eq!(report.input_bytes_used, input.len() as u64);
        assert_eq!(report.dropped_tail_bytes, 0);

        // Duration as written, read by our walker and by matroska-demuxer.
        let durations = common::durations(&out);
        assert_eq!(durations.len(), 1);
        assert!((durations[0] - fx.duration_ms as f64).abs() <= 1.0, "{durations:?}");
        let (demuxed_duration, frames) = demux(&out);
        let demuxed_duration = demuxed_duration.expect("Duration present");
        assert!((demuxed_duration - fx.duration_ms as f64).abs() <= 1.0);

        check_cues(&out, fx.clusters, fx.track);

        // EBML header unchanged.
        let header_len = common::parse(&input).ebml_header_end;
        assert_eq!(header_len, fx.ebml_header_len);
        assert_eq!(out[..header_len], input[..header_len]);

        // Block payloads byte-identical, same timestamps, by two readers.
        let before = audio_blocks(Cursor::new(&input)).unwrap();
        let after = audio_blocks(Cursor::new(&out)).unwrap();
        assert_eq!(before.len(), fx.packets);
        assert_eq!(before, after);
        assert_eq!(payload_sha(&before), payload_sha(&after));
        let independent = common::blocks(&input);
        assert_eq!(independent.len(), before.len());
        for (a, b) in independent.iter().zip(&before) {
            assert_eq!(a.payload, b.payload);
            assert_eq!(a.time_ms, b.timestamp_ms);
        }
        assert_eq!(frames.len(), before.len());
        for (f, b) in frames.iter().zip(&before) {
            assert_eq!(f.data, b.payload);
            assert_eq!(f.timestamp as i64, b.timestamp_ms);
        }
        // Media duration = last block + its packet (60 ms Chromium, 20 ms Firefox).
        assert_eq!(before.last().unwrap().timestamp_ms as u64 + fx.packet_ms, fx.duration_ms);
        assert!(before.iter().all(|b| b.track == fx.track));

        // The clusters' children are copied byte for byte; only the size field is new.
        let cin: Vec<_> = common::parse(&input).top.into_iter().filter(|e| e.id == CLUSTER).collect();
        let cout: Vec<_> = common::parse(&out).top.into_iter().filter(|e| e.id == CLUSTER).collect();
        assert_eq!(cin.len(), cout.len());
        for (a, b) in cin.iter().zip(&cout) {
            assert_eq!(input[a.data_start..a.end], out[b.data_start..b.end]);
        }
    }
}

#[test]
fn ffmpeg_and_mkvinfo_accept_the_fixed_files() {
    let dir = tempfile::tempdir().unwrap();
    for fx in &FIXTURES {
        let input = common::data_path(fx.name);
        let fixed = dir.path().join(fx.name);
        let outcome = audiobook_media::fix_recording(&input, &fixed, &Default::default()).unwrap();
        assert!(outcome.written);
        assert_eq!(outcome.duration_ms, fx.duration_ms);
        if let Some(problems) = common::tools::mkvinfo_problems(&fixed) {
            assert!(problems.is_empty(), "{}: mkvinfo: {problems:?}", fx.name);
            let before = common::tools::mkvinfo_problems(&input).unwrap();
            println!("{}: mkvinfo before: {} lines like {:?}; after: none", fx.name, before.len(), before.first());
        }
        let Some(decoded) = common::tools::ffmpeg_decode(&fixed) else {
            continue;
        };
        let before = common::tools::ffmpeg_decode(&input).unwrap();
        println!(
            "{}: ffmpeg before: {} lines, {:.3} s decoded; after: {} lines, {:.3} s decoded; duration_ms {}",
            fx.name,
            before.warnings.len(),
            before.seconds,
            decoded.warnings.len(),
            decoded.seconds,
            outcome.duration_ms
        );
        assert!(decoded.warnings.is_empty(), "{}: {:?}", fx.name, decoded.warnings);
        assert!((decoded.seconds - before.seconds).abs() < 0.001, "{}: the same audio decodes", fx.name);
        // Opus decoders drop the pre-skip / codec delay, so the decoded audio is a little shorter.
        let error = (decoded.seconds * 1000.0 - fx.duration_ms as f64).abs();
        assert!(error < 30.0, "{}: decoded {} s for duration_ms {}", fx.name, decoded.seconds, fx.duration_ms);
    }
}

#[test]
fn pause_leaves_no_gap_in_timestamps() {
    let blocks = audio_blocks(Cursor::new(common::data("mediarecorder-opus-pause.webm"))).unwrap();
    let steps: Vec<i64> = blocks.windows(2).map(|w| w[1].timestamp_ms - w[0].timestamp_ms).collect();
    // 60 ms packets; the 2 s pause shows up as one 69 ms step, not as a gap.
    assert!(steps.iter().all(|&s| s == 60 || s == 69), "{steps:?}");
    assert_eq!(steps.iter().filter(|&&s| s == 69).count(), 1);
    assert_eq!(blocks.last().unwrap().timestamp_ms, 5949);
}

#[test]
fn seeking_uses_the_cues() {
    let input = common::data("mediarecorder-opus-20s.webm");
    let (out, _) = fix(&input);
    let blocks = common::blocks(&input);
    for target in [0u64, 1000, 1020, 5000, 12_345, 17_500, 19_920] {
        let mut mkv = MatroskaFile::open(Cursor::new(&out)).unwrap();
        mkv.seek(target).unwrap();
        let mut f = Frame::default();
        assert!(mkv.next_frame(&mut f).unwrap(), "seek to {target}");
        // The first block at or after the target.
        let expected = blocks.iter().find(|b| b.time_ms as u64 >= target).unwrap();
        assert_eq!(f.timestamp, expected.time_ms as u64);
        assert_eq!(f.data, expected.payload);
    }
    // For contrast: in the unfixed file (unknown-size clusters, no Cues) this demuxer finds
    // nothing after a seek past the first cluster.
    let mut mkv = MatroskaFile::open(Cursor::new(&input)).unwrap();
    mkv.seek(5000).unwrap();
    assert!(!mkv.next_frame(&mut Frame::default()).unwrap());
}

#[test]
fn cut_off_takes_keep_the_complete_blocks() {
    let input = common::data("mediarecorder-opus-20s.webm");
    let blocks = common::blocks(&input);
    let clusters: Vec<_> = common::parse(&input).top.into_iter().filter(|e| e.id == CLUSTER).collect();
    let b = &blocks[150];
    let c = &clusters[11];
    // Timecode 11220 ms: E7 82 2B D4, four bytes.
    assert_eq!(input[c.data_start..c.data_start + 4], [0xE7, 0x82, 0x2B, 0xD4]);
    let cases = [
        ("mid-block", b.start + 40),
        ("right after a 0xA3 ID byte", b.start + 1),
        ("after a block's size bytes", b.start + 3),
        ("at a block boundary", b.end),
        ("one byte before the end", input.len() - 1),
        ("mid-cluster-header", c.start + 6),
        ("mid-cluster ID", c.start + 2),
        ("mid-Timecode", c.data_start + 2),
        ("right after a cluster header", c.data_start),
        ("after the Timecode, before any block", c.data_start + 4),
        ("first block of a cluster cut", c.data_start + 3 + 10),
    ];
    for (what, cut) in cases {
        let truncated = &input[..cut];
        let kept: Vec<_> = blocks.iter().filter(|b| b.end <= cut).collect();
        let (out, report) = fix(truncated);
        let used = kept.last().unwrap().end as u64;
        assert_eq!(report.input_bytes_used, used, "{what}");
        assert_eq!(report.dropped_tail_bytes, cut as u64 - used, "{what}");
        assert_eq!(report.blocks, kept.len(), "{what}");
        let expected_ms = kept.last().unwrap().time_ms as u64 + 60;
        assert_eq!(report.duration_ms, expected_ms, "{what}");

        let got = audio_blocks(Cursor::new(&out)).unwrap();
        assert_eq!(got.len(), kept.len(), "{what}");
        for (g, k) in got.iter().zip(&kept) {
            assert_eq!(g.payload, k.payload, "{what}");
            assert_eq!(g.timestamp_ms, k.time_ms, "{what}");
        }
        // audio_blocks on the cut input agrees: it ignores the cut-off tail too.
        assert_eq!(audio_blocks(Cursor::new(truncated)).unwrap(), got, "{what}");

        let (duration, frames) = demux(&out);
        assert_eq!(duration, Some(expected_ms as f64), "{what}");
        assert_eq!(frames.len(), kept.len(), "{what}");
        let cluster_count = common::parse(&out).top.iter().filter(|e| e.id == CLUSTER).count();
        assert_eq!(report.clusters, cluster_count);
        check_cues(&out, cluster_count, 1);
    }
}

#[test]
fn known_sizes_void_and_tags() {
    // A file with known Segment/Cluster sizes, a Void and Tags: Void dropped, Tags kept.
    let original = common::data("mediarecorder-opus-3s.webm");
    let input = common::with_known_sizes_and_tags(&original);
    let (out, report) = fix(&input);
    assert_eq!(report.duration_ms, 3000);
    assert_eq!(report.clusters, 3);
    let ids: Vec<u32> = common::parse(&out).top.iter().map(|e| e.id).collect();
    assert_eq!(ids[..4], [SEEK_HEAD, INFO, 0x1654_AE6B, CUES]);
    assert_eq!(ids[4..7], [CLUSTER; 3]);
    assert_eq!(ids[7], TAGS);
    assert!(!ids.contains(&VOID));
    assert!(common::seeks(&out).iter().any(|&(id, _)| id == TAGS));
    check_cues(&out, 3, 1);
    let mkv = MatroskaFile::open(Cursor::new(&out)).unwrap();
    assert_eq!(mkv.tags().unwrap()[0].simple_tags()[0].name(), "TITLE");
    assert_eq!(audio_blocks(Cursor::new(&out)).unwrap(), audio_blocks(Cursor::new(&original)).unwrap());

    // Cut inside the second (known-size) cluster: its size is rewritten to what is kept.
    let blocks = common::blocks(&input);
    let cut = blocks[25].start + 7;
    let (out, report) = fix(&input[..cut]);
    assert_eq!(report.blocks, 25);
    assert_eq!(report.duration_ms, blocks[24].time_ms as u64 + 60);
    let (_, frames) = demux(&out);
    assert_eq!(frames.len(), 25);
    let last = common::parse(&out).top.into_iter().last().unwrap();
    assert_eq!(last.id, CLUSTER);
    assert_eq!(last.end, out.len());
    check_cues(&out, 2, 1);
}

#[test]
fn fixing_twice_changes_nothing() {
    for fx in &FIXTURES {
        let (once, r1) = fix(&common::data(fx.name));
        let (twice, r2) = fix(&once);
        assert_eq!(r1.duration_ms, r2.duration_ms);
        assert_eq!(r1.blocks, r2.blocks);
        assert_eq!(r1.clusters, r2.clusters);
        assert_eq!(common::durations(&twice).len(), 1, "one Duration, not two");
        let tops = common::parse(&twice).top;
        assert_eq!(tops.iter().filter(|e| e.id == CUES).count(), 1);
        assert_eq!(tops.iter().filter(|e| e.id == SEEK_HEAD).count(), 1);
        assert_eq!(common::cues(&twice).len(), fx.clusters);
        assert_eq!(once, twice, "{}: the fixed file is a fixed point", fx.name);
    }
}

fn expect_not_webm(input: &[u8], what: &str) {
    let mut out = Vec::new();
    match fix_webm(Cursor::new(input), &mut out) {
        Err(MediaError::NotWebM(msg)) => println!("{what}: {msg}"),
        other => panic!("{what}: expected NotWebM, got {other:?}"),
    }
    assert!(out.is_empty(), "{what}: nothing written");
    assert!(matches!(audio_blocks(Cursor::new(input)), Err(MediaError::NotWebM(_))), "{what}");
}

#[test]
fn not_webm_is_rejected() {
    expect_not_webm(b"", "empty");
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let random: Vec<u8> = (0..4096)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 24) as u8
        })
        .collect();
    expect_not_webm(&random, "random bytes");
    let mp4 = [&[0, 0, 0, 0x18][..], b"ftypM4A \0\0\0\0M4A mp42", &[0, 0, 0, 8], b"mdat"].concat();
    assert_eq!(sniff(&mp4), ContainerKind::Mp4);
    expect_not_webm(&mp4, "MP4 header");

    let input = common::data("mediarecorder-opus-3s.webm");
    assert_eq!(sniff(&input), ContainerKind::WebM);
    expect_not_webm(&input[..20], "cut inside the EBML header");
    expect_not_webm(&input[..60], "cut before Tracks");
    // A DocType other than webm/matroska.
    let mut other = input.clone();
    other[0x18..0x1C].copy_from_slice(b"abcd");
    expect_not_webm(&other, "DocType abcd");
    // Damage in the middle (not a cut-off tail): a block's size byte zeroed.
    let mut damaged = input.clone();
    let b = &common::blocks(&input)[10];
    damaged[b.start + 1] = 0;
    expect_not_webm(&damaged, "invalid size in the middle");
    // A known-size Segment that ends before its last element does.
    let known = common::with_known_sizes_and_tags(&input);
    let mut overrun = known.clone();
    let seg_size_at = 36 + 4;
    let size = u64::from_be_bytes(known[seg_size_at..seg_size_at + 8].try_into().unwrap());
    overrun[seg_size_at..seg_size_at + 8].copy_from_slice(&(size - 100).to_be_bytes());
    expect_not_webm(&overrun, "element overruns the Segment");
}

#[test]
fn fix_webm_file_writes_and_syncs() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("in.webm");
    let dst = dir.path().join("out.webm");
    std::fs::write(&src, common::data("mediarecorder-opus-20s.webm")).unwrap();
    let report = fix_webm_file(&src, &dst).unwrap();
    let out = std::fs::read(&dst).unwrap();
    assert_eq!(report.output_bytes, out.len() as u64);
    assert_eq!(report.duration_ms, 19980);
    assert_eq!(common::durations(&out), [19980.0]);
    // Same path in and out is refused, and a failed fix leaves no output behind.
    assert!(matches!(fix_webm_file(&src, &src), Err(MediaError::Io(_))));
    std::fs::write(&src, b"not a webm").unwrap();
    assert!(matches!(fix_webm_file(&src, &dst), Err(MediaError::NotWebM(_))));
    assert!(!dst.exists());
}

#[test]
fn cut_anywhere_keeps_exactly_the_complete_blocks() {
    let input = common::data("mediarecorder-opus-3s.webm");
    let blocks = common::blocks(&input);
    let cluster2 = common::parse(&input).top.iter().filter(|e| e.id == CLUSTER).nth(1).unwrap().start;
    // A sweep over the whole file plus every byte around a cluster boundary.
    let cuts = (146..input.len()).step_by(37).chain(cluster2 - 30..cluster2 + 40);
    for cut in cuts {
        let kept: Vec<_> = blocks.iter().filter(|b| b.end <= cut).collect();
        let (out, report) = fix(&input[..cut]);
        assert_eq!(report.blocks, kept.len(), "cut at {cut}");
        let used = kept.last().map_or(146, |b| b.end) as u64;
        assert_eq!(report.input_bytes_used, used, "cut at {cut}");
        let expected_ms = kept.last().map_or(0, |b| b.time_ms as u64 + 60);
        assert_eq!(report.duration_ms, expected_ms, "cut at {cut}");
        let got = audio_blocks(Cursor::new(&out)).unwrap();
        assert!(got.iter().map(|b| &b.payload).eq(kept.iter().map(|b| &b.payload)), "cut at {cut}");
        if !kept.is_empty() {
            let (_, frames) = demux(&out);
            assert_eq!(frames.len(), kept.len(), "cut at {cut}");
        }
    }
}
