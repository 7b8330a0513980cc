//! Best-effort duration of an MP4 / M4A file.
//!
//! A plain MP4 has it in `mvhd`. Safari's MediaRecorder writes fragmented MP4 whose `mvhd`
//! duration is 0: there the duration is the sum of the sample durations in the `trun` boxes
//! (or the fragment defaults from `tfhd` / `trex`), in the track's `mdhd` timescale.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};

/// Duration in ms, or `None` if the file does not say (or is not an MP4 this understands).
pub fn mp4_duration_ms<R: Read + Seek>(mut input: R) -> Option<u64> {
    let len = input.seek(SeekFrom::End(0)).ok()?;
    let mut info = Mp4Info::default();
    // Top-level boxes one at a time: a long fragmented file has thousands of moof boxes.
    let mut pos = 0;
    while pos < len {
        let Some(b) = read_box(&mut input, pos, len) else {
            // A damaged or cut-off tail: use what was read before it.
            break;
        };
        pos = b.end;
        match &b.kind {
            b"moov" => parse_moov(&mut input, &b, &mut info)?,
            b"moof" => parse_moof(&mut input, &b, &mut info)?,
            _ => {}
        }
    }
    let ms = |units: u64, scale: u32| -> Option<u64> {
        (scale > 0 && units > 0 && units != u64::MAX && units != u32::MAX as u64)
            .then(|| ((units as u128 * 1000 + scale as u128 / 2) / scale as u128) as u64)
    };
    ms(info.movie_duration, info.movie_timescale).or_else(|| ms(info.fragment_duration, info.movie_timescale)).or_else(
        || info.fragment_sums.iter().filter_map(|(track, &sum)| ms(sum, *info.track_timescale.get(track)?)).max(),
    )
}

#[derive(Default)]
struct Mp4Info {
    movie_timescale: u32,
    movie_duration: u64,
    /// mvex/mehd: total duration of a fragmented file, when the muxer knew it.
    fragment_duration: u64,
    track_timescale: HashMap<u32, u32>,
    /// trex default_sample_duration per track.
    trex_default: HashMap<u32, u32>,
    /// Sum of sample durations in fragments, per track.
    fragment_sums: HashMap<u32, u64>,
}

struct Mp4Box {
    kind: [u8; 4],
    data_start: u64,
    end: u64,
}

/// Reads the box header at `pos` (which must be below `end`); `None` if it is damaged.
fn read_box<R: Read + Seek>(r: &mut R, pos: u64, end: u64) -> Option<Mp4Box> {
    if pos + 8 > end {
        return None;
    }
    r.seek(SeekFrom::Start(pos)).ok()?;
    let mut h = [0u8; 8];
    r.read_exact(&mut h).ok()?;
    let size32 = u32::from_be_bytes(h[..4].try_into().unwrap()) as u64;
    let kind: [u8; 4] = h[4..].try_into().unwrap();
    let (size, header) = match size32 {
        // Size 0: the box runs to the end of its parent (a live-written mdat).
        0 => (end - pos, 8),
        1 => {
            let mut l = [0u8; 8];
            r.read_exact(&mut l).ok()?;
            (u64::from_be_bytes(l), 16)
        }
        s => (s, 8),
    };
    if size < header || pos.checked_add(size)? > end {
        return None;
    }
    Some(Mp4Box { kind, data_start: pos + header, end: pos + size })
}

/// The child boxes of [start, end); `None` if any header is damaged.
fn boxes<R: Read + Seek>(r: &mut R, start: u64, end: u64) -> Option<Vec<Mp4Box>> {
    let mut out = Vec::new();
    let mut pos = start;
    while pos < end {
        let b = read_box(r, pos, end)?;
        pos = b.end;
        out.push(b);
    }
    Some(out)
}

fn read_body<R: Read + Seek>(r: &mut R, b: &Mp4Box, max: u64) -> Option<Vec<u8>> {
    let len = b.end - b.data_start;
    if len > max {
        return None;
    }
    r.seek(SeekFrom::Start(b.data_start)).ok()?;
    let mut v = vec![0u8; len as usize];
    r.read_exact(&mut v).ok()?;
    Some(v)
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn be64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// (timescale, duration) of an mvhd or mdhd body; both share this layout.
fn header_times(body: &[u8]) -> Option<(u32, u64)> {
    match body.first()? {
        0 => Some((be32(body, 12)?, be32(body, 16)? as u64)),
        1 => Some((be32(body, 20)?, be64(body, 24)?)),
        _ => None,
    }
}

fn parse_moov<R: Read + Seek>(r: &mut R, moov: &Mp4Box, info: &mut Mp4Info) -> Option<()> {
    let children = boxes(r, moov.data_start, moov.end)?;
    for b in children {
        match &b.kind {
            b"mvhd" => (info.movie_timescale, info.movie_duration) = header_times(&read_body(r, &b, 4096)?)?,
            b"trak" => parse_trak(r, &b, info)?,
            b"mvex" => {
                let kids = boxes(r, b.data_start, b.end)?;
                for k in kids {
                    let body = read_body(r, &k, 4096)?;
                    match &k.kind {
                        b"mehd" if body[0] == 1 => info.fragment_duration = be64(&body, 4)?,
                        b"mehd" => info.fragment_duration = be32(&body, 4)? as u64,
                        // version/flags, track_ID, default_sample_description_index, duration
                        b"trex" => {
                            info.trex_default.insert(be32(&body, 4)?, be32(&body, 12)?);
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Some(())
}

fn parse_trak<R: Read + Seek>(r: &mut R, trak: &Mp4Box, info: &mut Mp4Info) -> Option<()> {
    let mut track_id = None;
    let mut timescale = None;
    let kids = boxes(r, trak.data_start, trak.end)?;
    for b in kids {
        match &b.kind {
            b"tkhd" => {
                let body = read_body(r, &b, 4096)?;
                // track_ID follows creation and modification times (4 or 8 bytes each).
                track_id = Some(if body[0] == 1 { be32(&body, 20)? } else { be32(&body, 12)? });
            }
            b"mdia" => {
                let mdia = boxes(r, b.data_start, b.end)?;
                for m in mdia {
                    if &m.kind == b"mdhd" {
                        timescale = Some(header_times(&read_body(r, &m, 4096)?)?.0);
                    }
                }
            }
            _ => {}
        }
    }
    if let (Some(id), Some(ts)) = (track_id, timescale) {
        info.track_timescale.insert(id, ts);
    }
    Some(())
}

fn parse_moof<R: Read + Seek>(r: &mut R, moof: &Mp4Box, info: &mut Mp4Info) -> Option<()> {
    let trafs = boxes(r, moof.data_start, moof.end)?;
    for traf in trafs.iter().filter(|b| &b.kind == b"traf") {
        let kids = boxes(r, traf.data_start, traf.end)?;
        let mut track = None;
        let mut default = None;
        for k in kids {
            match &k.kind {
                b"tfhd" => {
                    let body = read_body(r, &k, 4096)?;
                    let flags = be32(&body, 0)? & 0x00FF_FFFF;
                    let id = be32(&body, 4)?;
                    track = Some(id);
                    // Optional fields in order: base_data_offset (8), sample_description_index
                    // (4), default_sample_duration (4).
                    let mut at = 8;
                    if flags & 0x1 != 0 {
                        at += 8;
                    }
                    if flags & 0x2 != 0 {
                        at += 4;
                    }
                    default =
                        if flags & 0x8 != 0 { Some(be32(&body, at)?) } else { info.trex_default.get(&id).copied() };
                }
                b"trun" => {
                    let id = track?;
                    let body = read_body(r, &k, 64 << 20)?;
                    let flags = be32(&body, 0)? & 0x00FF_FFFF;
                    let count = be32(&body, 4)? as usize;
                    let mut at = 8 + 4 * ((flags & 0x1 != 0) as usize + (flags & 0x4 != 0) as usize);
                    let per_sample = [0x100, 0x200, 0x400, 0x800].iter().filter(|&&f| flags & f != 0).count() * 4;
                    let sum: u64 = if flags & 0x100 != 0 {
                        let mut s = 0u64;
                        for _ in 0..count {
                            s += be32(&body, at)? as u64;
                            at += per_sample;
                        }
                        s
                    } else {
                        count as u64 * default? as u64
                    };
                    *info.fragment_sums.entry(id).or_default() += sum;
                }
                _ => {}
            }
        }
    }
    Some(())
}
