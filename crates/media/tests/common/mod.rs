//! An independent, in-memory EBML walker for checking results. Deliberately separate from
//! the crate's own reader, so a bug there cannot hide itself in the tests. [`tools`] runs
//! ffmpeg and mkvinfo on results; [`mp4`] builds and reads MP4s.
#![allow(dead_code)]

pub mod mp4;
pub mod tools;

use std::path::PathBuf;

pub const CLUSTER: u32 = 0x1F43_B675;
pub const SEGMENT: u32 = 0x1853_8067;
pub const INFO: u32 = 0x1549_A966;
pub const CUES: u32 = 0x1C53_BB6B;
pub const SEEK_HEAD: u32 = 0x114D_9B74;
pub const TAGS: u32 = 0x1254_C367;
pub const VOID: u32 = 0xEC;

pub struct Fixture {
    pub name: &'static str,
    pub duration_ms: u64,
    pub clusters: usize,
    pub packets: usize,
    /// Every Opus packet's length (Chromium: 3 frames of 20 ms; Firefox: one).
    pub packet_ms: u64,
    pub track: u64,
    pub ebml_header_len: usize,
}

/// The MediaRecorder WebM takes and what tests/data/README.md says about them.
pub const FIXTURES: [Fixture; 5] = [
    Fixture {
        name: "mediarecorder-opus-3s.webm",
        duration_ms: 3000,
        clusters: 3,
        packets: 50,
        packet_ms: 60,
        track: 1,
        ebml_header_len: 36,
    },
    Fixture {
        name: "mediarecorder-opus-20s.webm",
        duration_ms: 19980,
        clusters: 20,
        packets: 333,
        packet_ms: 60,
        track: 1,
        ebml_header_len: 36,
    },
    Fixture {
        name: "mediarecorder-opus-pause.webm",
        duration_ms: 6009,
        clusters: 6,
        packets: 100,
        packet_ms: 60,
        track: 1,
        ebml_header_len: 36,
    },
    Fixture {
        name: "firefox-opus-5s.webm",
        duration_ms: 4706,
        clusters: 5,
        packets: 235,
        packet_ms: 20,
        track: 2,
        ebml_header_len: 43,
    },
    Fixture {
        name: "firefox-opus-pause.webm",
        duration_ms: 3906,
        clusters: 4,
        packets: 195,
        packet_ms: 20,
        track: 2,
        ebml_header_len: 43,
    },
];

pub fn data_path(name: &str) -> PathBuf {
    [env!("CARGO_MANIFEST_DIR"), "tests", "data", name].iter().collect()
}

pub fn data(name: &str) -> Vec<u8> {
    let path = data_path(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// (value or None for unknown, length)
pub fn vint(buf: &[u8], pos: usize) -> (Option<u64>, usize) {
    let first = buf[pos];
    assert_ne!(first, 0, "bad vint at {pos}");
    let len = first.leading_zeros() as usize + 1;
    let mask = (0xFFu16 >> len) as u8;
    let mut v = (first & mask) as u64;
    let mut ones = first & mask == mask;
    for i in 1..len {
        v = (v << 8) | buf[pos + i] as u64;
        ones &= buf[pos + i] == 0xFF;
    }
    (if ones { None } else { Some(v) }, len)
}

/// (id, data_start, size)
pub fn header(buf: &[u8], pos: usize) -> (u32, usize, Option<u64>) {
    let len = buf[pos].leading_zeros() as usize + 1;
    let id = buf[pos..pos + len].iter().fold(0u32, |a, &b| (a << 8) | b as u32);
    let (size, slen) = vint(buf, pos + len);
    (id, pos + len + slen, size)
}

fn is_top_level(id: u32) -> bool {
    matches!(id, CLUSTER | INFO | CUES | SEEK_HEAD | TAGS | 0x1654_AE6B | 0x1043_A770 | 0x1941_A469)
}

pub struct El {
    pub id: u32,
    pub start: usize,
    pub data_start: usize,
    pub end: usize,
}

pub struct File {
    pub ebml_header_end: usize,
    pub segment_data_start: usize,
    pub top: Vec<El>,
}

/// Top-level elements of a complete file (unknown-size clusters end at the next top-level ID).
pub fn parse(buf: &[u8]) -> File {
    let (id, ds, size) = header(buf, 0);
    assert_eq!(id, 0x1A45_DFA3);
    let ebml_header_end = ds + size.unwrap() as usize;
    let (id, seg_ds, seg_size) = header(buf, ebml_header_end);
    assert_eq!(id, SEGMENT);
    let seg_end = seg_size.map_or(buf.len(), |s| seg_ds + s as usize);
    assert_eq!(seg_end, buf.len(), "Segment size must match the file");
    let mut top = Vec::new();
    let mut pos = seg_ds;
    while pos < seg_end {
        let (id, ds, size) = header(buf, pos);
        let end = match size {
            Some(s) => ds + s as usize,
            None => {
                assert_eq!(id, CLUSTER, "only clusters may have an unknown size");
                let mut p = ds;
                while p < seg_end {
                    let (cid, cds, csize) = header(buf, p);
                    if is_top_level(cid) {
                        break;
                    }
                    p = cds + csize.unwrap() as usize;
                }
                p
            }
        };
        assert!(end <= seg_end);
        top.push(El { id, start: pos, data_start: ds, end });
        pos = end;
    }
    File { ebml_header_end, segment_data_start: seg_ds, top }
}

pub fn uint(b: &[u8]) -> u64 {
    b.iter().fold(0u64, |a, &x| (a << 8) | x as u64)
}

/// Children of a master element body: (id, data_start, end), absolute offsets.
pub fn children(buf: &[u8], start: usize, end: usize) -> Vec<(u32, usize, usize)> {
    let mut out = Vec::new();
    let mut p = start;
    while p < end {
        let (id, ds, size) = header(buf, p);
        let e = ds + size.unwrap() as usize;
        out.push((id, ds, e));
        p = e;
    }
    assert_eq!(p, end);
    out
}

pub struct Blk {
    pub start: usize,
    pub end: usize,
    pub time_ms: i64,
    pub payload: Vec<u8>,
}

/// Every SimpleBlock of the file (TimecodeScale 1 ms, as MediaRecorder writes).
pub fn blocks(buf: &[u8]) -> Vec<Blk> {
    let f = parse(buf);
    let mut out = Vec::new();
    for el in f.top.iter().filter(|e| e.id == CLUSTER) {
        let mut tc = 0i64;
        let mut p = el.data_start;
        while p < el.end {
            let (id, ds, size) = header(buf, p);
            let end = ds + size.unwrap() as usize;
            match id {
                0xE7 => tc = uint(&buf[ds..end]) as i64,
                0xA3 => {
                    let (_, tlen) = vint(buf, ds);
                    let rel = i16::from_be_bytes([buf[ds + tlen], buf[ds + tlen + 1]]) as i64;
                    out.push(Blk { start: p, end, time_ms: tc + rel, payload: buf[ds + tlen + 3..end].to_vec() });
                }
                _ => {}
            }
            p = end;
        }
    }
    out
}

/// The Duration float of Info, if any, and how many Duration elements there are.
pub fn durations(buf: &[u8]) -> Vec<f64> {
    let f = parse(buf);
    let mut out = Vec::new();
    for el in f.top.iter().filter(|e| e.id == INFO) {
        for (id, ds, end) in children(buf, el.data_start, el.end) {
            if id == 0x4489 {
                let d = match end - ds {
                    8 => f64::from_be_bytes(buf[ds..end].try_into().unwrap()),
                    4 => f32::from_be_bytes(buf[ds..end].try_into().unwrap()) as f64,
                    n => panic!("Duration of {n} bytes"),
                };
                out.push(d);
            }
        }
    }
    out
}

pub struct Cue {
    pub time: u64,
    pub track: u64,
    pub cluster_pos: u64,
}

pub fn cues(buf: &[u8]) -> Vec<Cue> {
    let f = parse(buf);
    let mut out = Vec::new();
    for el in f.top.iter().filter(|e| e.id == CUES) {
        for (id, ds, end) in children(buf, el.data_start, el.end) {
            assert_eq!(id, 0xBB, "Cues holds only CuePoints");
            let mut cue = Cue { time: u64::MAX, track: 0, cluster_pos: u64::MAX };
            for (id, ds, end) in children(buf, ds, end) {
                match id {
                    0xB3 => cue.time = uint(&buf[ds..end]),
                    0xB7 => {
                        for (id, ds, end) in children(buf, ds, end) {
                            match id {
                                0xF7 => cue.track = uint(&buf[ds..end]),
                                0xF1 => cue.cluster_pos = uint(&buf[ds..end]),
                                _ => {}
                            }
                        }
                    }
                    _ => {}
                }
            }
            out.push(cue);
        }
    }
    out
}

/// SeekHead entries: (ID, position relative to the Segment data).
pub fn seeks(buf: &[u8]) -> Vec<(u32, u64)> {
    let f = parse(buf);
    let mut out = Vec::new();
    for el in f.top.iter().filter(|e| e.id == SEEK_HEAD) {
        for (_, ds, end) in children(buf, el.data_start, el.end) {
            let mut id = 0;
            let mut pos = 0;
            for (cid, cds, cend) in children(buf, ds, end) {
                match cid {
                    0x53AB => id = uint(&buf[cds..cend]) as u32,
                    0x53AC => pos = uint(&buf[cds..cend]),
                    _ => {}
                }
            }
            out.push((id, pos));
        }
    }
    out
}

/// The same file with every size known (Segment and Clusters), plus a Void before the first
/// Cluster and a Tags element at the end: the layout of a desktop muxer, not of MediaRecorder.
pub fn with_known_sizes_and_tags(buf: &[u8]) -> Vec<u8> {
    let f = parse(buf);
    let mut body = Vec::new();
    let mut void_done = false;
    for el in &f.top {
        if el.id == CLUSTER {
            if !void_done {
                body.extend_from_slice(&[0xEC, 0x85, 0, 0, 0, 0, 0]);
                void_done = true;
            }
            let data = &buf[el.data_start..el.end];
            body.extend_from_slice(&[0x1F, 0x43, 0xB6, 0x75]);
            body.extend_from_slice(&size8(data.len() as u64));
            body.extend_from_slice(data);
        } else {
            body.extend_from_slice(&buf[el.start..el.end]);
        }
    }
    // Tags { Tag { SimpleTag { TagName "TITLE", TagString "take" } } }
    let simple = [&[0x45, 0xA3, 0x85][..], b"TITLE", &[0x44, 0x87, 0x84], b"take"].concat();
    let tag = [&[0x67, 0xC8, 0x80 | simple.len() as u8][..], &simple].concat();
    let tags = [&[0x73, 0x73, 0x80 | tag.len() as u8][..], &tag].concat();
    body.extend_from_slice(&[0x12, 0x54, 0xC3, 0x67, 0x80 | tags.len() as u8]);
    body.extend_from_slice(&tags);

    let mut out = buf[..f.ebml_header_end].to_vec();
    out.extend_from_slice(&[0x18, 0x53, 0x80, 0x67]);
    out.extend_from_slice(&size8(body.len() as u64));
    out.extend_from_slice(&body);
    out
}

fn size8(v: u64) -> [u8; 8] {
    let mut b = v.to_be_bytes();
    b[0] = 0x01;
    b
}
