//! MP4 (ISO BMFF) boxes as MediaRecorder writes them: top-level box headers read through a
//! [`Source`], `moov` and `moof` bodies parsed in memory (each bounded in size), every field
//! read through checked accessors, so no input can index out of bounds or overflow.
//!
//! Only what the MP4 fixer and reader need: `mvhd`, `trak`/`tkhd`/`mdia`/`mdhd`,
//! `mvex`/`mehd`/`trex` in the `moov`; `mfhd`, `traf`/`tfhd`/`tfdt`/`trun` in a `moof`.

use std::ops::Range;

use crate::source::{ReadResult, Source, malformed};

pub type FourCC = [u8; 4];

/// The largest `moov` held in memory (WebKit's is 753 bytes).
pub const MAX_MOOV_BYTES: u64 = 16 << 20;
/// The largest `moof` held in memory: about 87 000 samples (WebKit writes 43 a second).
pub const MAX_MOOF_BYTES: u64 = 1 << 20;
/// Tracks beyond which a `moov` is refused (a recording has one).
pub const MAX_TRACKS: usize = 128;

/// A top-level box header as found in the input.
#[derive(Debug, Clone, Copy)]
pub struct BoxHeader {
    pub kind: FourCC,
    pub start: u64,
    pub data_start: u64,
    /// Where the box says it ends; may lie past the end of a cut-off input.
    pub end: u64,
}

/// Reads the box header at the source's position. `Ok(None)` at a clean end of the input,
/// `Err(Eof)` inside the header. `input_len` resolves size 0 ("up to the end of the file").
pub fn read_box_header<S: Source>(src: &mut S, input_len: u64) -> ReadResult<Option<BoxHeader>> {
    let start = src.pos();
    if start >= input_len {
        return Ok(None);
    }
    let mut h = [0u8; 8];
    src.read_exact(&mut h)?;
    let size32 = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
    let kind = [h[4], h[5], h[6], h[7]];
    let (size, header_len) = match size32 {
        // Up to the end of the file (a live-written mdat); read_exact above proved 8 bytes.
        0 => (input_len - start, 8),
        1 => {
            let mut l = [0u8; 8];
            src.read_exact(&mut l)?;
            (u64::from_be_bytes(l), 16)
        }
        s => (u64::from(s), 8),
    };
    let Some(end) = start.checked_add(size).filter(|_| size >= header_len) else {
        return malformed(format!("box {} of size {size} at {start}", show(kind)));
    };
    Ok(Some(BoxHeader { kind, start, data_start: start + header_len, end }))
}

/// A box's type for messages: printable ASCII as is, otherwise hex.
pub fn show(kind: FourCC) -> String {
    if kind.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
        String::from_utf8_lossy(&kind).into_owned()
    } else {
        format!("0x{:08X}", u32::from_be_bytes(kind))
    }
}

/// A child box inside an in-memory buffer: offsets into that buffer.
#[derive(Debug, Clone)]
pub struct Child {
    pub kind: FourCC,
    pub data: Range<usize>,
}

/// The child boxes of `buf[range]`, in order; an error if a header is damaged or a child
/// overruns its parent.
pub fn children(buf: &[u8], range: Range<usize>) -> Result<Vec<Child>, String> {
    let mut out = Vec::new();
    let mut pos = range.start;
    let end = range.end.min(buf.len());
    while pos < end {
        let mut r = Reader::at(buf, pos, end);
        let (Some(size32), Some(kind)) = (r.u32(), r.fourcc()) else {
            return Err("damaged child box header".into());
        };
        let size = match size32 {
            0 => (end - pos) as u64,
            1 => r.u64().ok_or("damaged child box header")?,
            s => u64::from(s),
        };
        let header_len = r.pos - pos;
        let child_end = usize::try_from(size).ok().and_then(|s| pos.checked_add(s));
        let Some(child_end) = child_end.filter(|&e| e <= end && size >= header_len as u64) else {
            return Err(format!("child box {} overruns its parent", show(kind)));
        };
        out.push(Child { kind, data: pos + header_len..child_end });
        pos = child_end;
    }
    Ok(out)
}

/// Big-endian reads from `buf[pos..end]` that return `None` instead of running past the end.
pub struct Reader<'a> {
    buf: &'a [u8],
    pub pos: usize,
    end: usize,
}

impl<'a> Reader<'a> {
    pub fn at(buf: &'a [u8], pos: usize, end: usize) -> Reader<'a> {
        Reader { buf, pos, end: end.min(buf.len()) }
    }

    pub fn of(buf: &'a [u8], range: &Range<usize>) -> Reader<'a> {
        Reader::at(buf, range.start, range.end)
    }

    pub fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.end)?;
        let b = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(b)
    }

    pub fn u8(&mut self) -> Option<u8> {
        self.bytes(1).map(|b| b[0])
    }

    pub fn u32(&mut self) -> Option<u32> {
        self.bytes(4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn u64(&mut self) -> Option<u64> {
        self.bytes(8).map(|b| u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
    }

    pub fn fourcc(&mut self) -> Option<FourCC> {
        self.bytes(4).map(|b| [b[0], b[1], b[2], b[3]])
    }

    pub fn remaining(&self) -> usize {
        self.end.saturating_sub(self.pos)
    }
}

/// Where a duration field sits in the `moov` buffer, and whether it is 8 bytes (version 1)
/// or 4 (version 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    pub at: usize,
    pub wide: bool,
}

impl Field {
    /// Writes `value` into `buf`; `false` if it does not fit a 4-byte field.
    pub fn patch(self, buf: &mut [u8], value: u64) -> bool {
        let bytes = if self.wide {
            value.to_be_bytes().to_vec()
        } else {
            match u32::try_from(value) {
                Ok(v) => v.to_be_bytes().to_vec(),
                Err(_) => return false,
            }
        };
        match buf.get_mut(self.at..self.at + bytes.len()) {
            Some(dst) => {
                dst.copy_from_slice(&bytes);
                true
            }
            None => false,
        }
    }
}

/// `trex`: a track's fragment defaults.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Trex {
    pub duration: u32,
    pub size: u32,
}

#[derive(Debug, Clone)]
pub struct Track {
    pub id: u32,
    pub timescale: u32,
    pub tkhd_duration: Field,
    pub mdhd_duration: Field,
    pub trex: Option<Trex>,
}

/// What the fixer and the reader need from a `moov`.
#[derive(Debug, Clone)]
pub struct Moov {
    pub movie_timescale: u32,
    pub movie_duration: u64,
    pub mvhd_duration: Field,
    /// `mvex` present: the samples are in fragments.
    pub fragmented: bool,
    /// `mehd`'s fragment_duration and where it is.
    pub mehd: Option<(u64, Field)>,
    pub tracks: Vec<Track>,
}

fn full_box_version<'a>(buf: &'a [u8], c: &Child) -> Result<(u8, Reader<'a>), String> {
    let mut r = Reader::of(buf, &c.data);
    let version = r.u8().ok_or_else(|| format!("empty {}", show(c.kind)))?;
    r.bytes(3).ok_or_else(|| format!("short {}", show(c.kind)))?;
    match version {
        0 | 1 => Ok((version, r)),
        v => Err(format!("{} version {v}", show(c.kind))),
    }
}

/// (timescale, duration, duration field) of an `mvhd` or `mdhd`: both share this layout.
fn header_times(buf: &[u8], c: &Child) -> Result<(u32, u64, Field), String> {
    let short = || format!("short {}", show(c.kind));
    let (version, mut r) = full_box_version(buf, c)?;
    let wide = version == 1;
    r.bytes(if wide { 16 } else { 8 }).ok_or_else(short)?; // creation, modification
    let timescale = r.u32().ok_or_else(short)?;
    let at = r.pos;
    let duration = if wide { r.u64() } else { r.u32().map(u64::from) }.ok_or_else(short)?;
    Ok((timescale, duration, Field { at, wide }))
}

/// Parses a whole `moov` box held in `buf` (header included).
pub fn parse_moov(buf: &[u8]) -> Result<Moov, String> {
    let top = children(buf, 0..buf.len())?;
    let moov = top.first().filter(|c| &c.kind == b"moov").ok_or("not a moov")?;
    let mut mvhd = None;
    let mut fragmented = false;
    let mut mehd = None;
    let mut tracks = Vec::new();
    let mut trex = Vec::new();
    for c in children(buf, moov.data.clone())? {
        match &c.kind {
            b"mvhd" => mvhd = Some(header_times(buf, &c)?),
            b"trak" => {
                if tracks.len() >= MAX_TRACKS {
                    return Err(format!("more than {MAX_TRACKS} tracks"));
                }
                tracks.push(parse_trak(buf, &c)?);
            }
            b"mvex" => {
                fragmented = true;
                for k in children(buf, c.data.clone())? {
                    match &k.kind {
                        b"mehd" => {
                            let (version, mut r) = full_box_version(buf, &k)?;
                            let at = r.pos;
                            let wide = version == 1;
                            let d = if wide { r.u64() } else { r.u32().map(u64::from) }.ok_or("short mehd")?;
                            mehd = Some((d, Field { at, wide }));
                        }
                        b"trex" => {
                            if trex.len() >= MAX_TRACKS {
                                return Err(format!("more than {MAX_TRACKS} trex"));
                            }
                            let (_, mut r) = full_box_version(buf, &k)?;
                            let (Some(id), Some(_sdi), Some(duration), Some(size)) =
                                (r.u32(), r.u32(), r.u32(), r.u32())
                            else {
                                return Err("short trex".into());
                            };
                            trex.push((id, Trex { duration, size }));
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    let (movie_timescale, movie_duration, mvhd_duration) = mvhd.ok_or("moov without mvhd")?;
    if movie_timescale == 0 {
        return Err("mvhd timescale 0".into());
    }
    for (id, t) in trex {
        if let Some(track) = tracks.iter_mut().find(|tr| tr.id == id) {
            track.trex = Some(t);
        }
    }
    Ok(Moov { movie_timescale, movie_duration, mvhd_duration, fragmented, mehd, tracks })
}

fn parse_trak(buf: &[u8], trak: &Child) -> Result<Track, String> {
    let mut tkhd = None;
    let mut mdhd = None;
    for c in children(buf, trak.data.clone())? {
        match &c.kind {
            b"tkhd" => {
                let (version, mut r) = full_box_version(buf, &c)?;
                let wide = version == 1;
                r.bytes(if wide { 16 } else { 8 }).ok_or("short tkhd")?; // creation, modification
                let id = r.u32().ok_or("short tkhd")?;
                r.bytes(4).ok_or("short tkhd")?; // reserved
                let at = r.pos;
                r.bytes(if wide { 8 } else { 4 }).ok_or("short tkhd")?;
                tkhd = Some((id, Field { at, wide }));
            }
            b"mdia" => {
                for m in children(buf, c.data.clone())? {
                    if &m.kind == b"mdhd" {
                        mdhd = Some(header_times(buf, &m)?);
                    }
                }
            }
            _ => {}
        }
    }
    let (id, tkhd_duration) = tkhd.ok_or("trak without tkhd")?;
    let (timescale, _, mdhd_duration) = mdhd.ok_or("trak without mdhd")?;
    if timescale == 0 {
        return Err("mdhd timescale 0".into());
    }
    Ok(Track { id, timescale, tkhd_duration, mdhd_duration, trex: None })
}

/// tfhd flags.
pub const TFHD_BASE_DATA_OFFSET: u32 = 0x1;
pub const TFHD_SAMPLE_DESCRIPTION_INDEX: u32 = 0x2;
pub const TFHD_DEFAULT_DURATION: u32 = 0x8;
pub const TFHD_DEFAULT_SIZE: u32 = 0x10;
pub const TFHD_DEFAULT_FLAGS: u32 = 0x20;
/// trun flags.
pub const TRUN_DATA_OFFSET: u32 = 0x1;
pub const TRUN_FIRST_SAMPLE_FLAGS: u32 = 0x4;
pub const TRUN_DURATION: u32 = 0x100;
pub const TRUN_SIZE: u32 = 0x200;
pub const TRUN_FLAGS: u32 = 0x400;
pub const TRUN_CTS: u32 = 0x800;

/// One `trun`: its header values and where its per-sample entries are in the moof buffer.
#[derive(Debug, Clone)]
pub struct Run {
    pub version: u8,
    pub flags: u32,
    pub count: u32,
    pub data_offset: Option<i32>,
    pub first_sample_flags: Option<u32>,
    /// Bytes of the per-sample entries: `count * stride` bytes.
    pub entries: Range<usize>,
    /// Bytes per sample entry (4 per per-sample field present).
    pub stride: usize,
}

/// The one `traf` of a fragment.
#[derive(Debug, Clone)]
pub struct Traf {
    pub track_id: u32,
    pub tfhd_flags: u32,
    pub base_data_offset: Option<u64>,
    pub sample_description_index: Option<u32>,
    pub default_duration: Option<u32>,
    pub default_size: Option<u32>,
    pub default_flags: Option<u32>,
    pub runs: Vec<Run>,
}

#[derive(Debug, Clone)]
pub struct Moof {
    pub sequence: u32,
    pub traf: Traf,
}

/// Parses a whole `moof` box held in `buf` (header included). The fixer handles
/// single-track fragments: exactly one `traf`.
pub fn parse_moof(buf: &[u8]) -> Result<Moof, String> {
    let top = children(buf, 0..buf.len())?;
    let moof = top.first().filter(|c| &c.kind == b"moof").ok_or("not a moof")?;
    let mut sequence = None;
    let mut traf = None;
    for c in children(buf, moof.data.clone())? {
        match &c.kind {
            b"mfhd" => {
                let (_, mut r) = full_box_version(buf, &c)?;
                sequence = Some(r.u32().ok_or("short mfhd")?);
            }
            b"traf" if traf.is_some() => return Err("more than one traf in a moof".into()),
            b"traf" => traf = Some(parse_traf(buf, &c)?),
            _ => {}
        }
    }
    Ok(Moof { sequence: sequence.ok_or("moof without mfhd")?, traf: traf.ok_or("moof without traf")? })
}

fn parse_traf(buf: &[u8], traf: &Child) -> Result<Traf, String> {
    let mut t = None;
    let mut runs = Vec::new();
    for c in children(buf, traf.data.clone())? {
        match &c.kind {
            b"tfhd" => {
                let mut r = Reader::of(buf, &c.data);
                let flags = r.u32().ok_or("short tfhd")? & 0x00FF_FFFF;
                let track_id = r.u32().ok_or("short tfhd")?;
                let mut opt =
                    |bit: u32| if flags & bit != 0 { r.u32().ok_or("short tfhd").map(Some) } else { Ok(None) };
                // base_data_offset is 8 bytes: two reads, then the 4-byte fields in order.
                let base_hi = opt(TFHD_BASE_DATA_OFFSET)?;
                let base_lo = opt(TFHD_BASE_DATA_OFFSET)?;
                let base_data_offset = base_hi.zip(base_lo).map(|(h, l)| (u64::from(h) << 32) | u64::from(l));
                t = Some(Traf {
                    track_id,
                    tfhd_flags: flags,
                    base_data_offset,
                    sample_description_index: opt(TFHD_SAMPLE_DESCRIPTION_INDEX)?,
                    default_duration: opt(TFHD_DEFAULT_DURATION)?,
                    default_size: opt(TFHD_DEFAULT_SIZE)?,
                    default_flags: opt(TFHD_DEFAULT_FLAGS)?,
                    runs: Vec::new(),
                });
            }
            b"trun" => runs.push(parse_trun(buf, &c)?),
            _ => {}
        }
    }
    let mut t = t.ok_or("traf without tfhd")?;
    t.runs = runs;
    Ok(t)
}

fn parse_trun(buf: &[u8], c: &Child) -> Result<Run, String> {
    let mut r = Reader::of(buf, &c.data);
    let vf = r.u32().ok_or("short trun")?;
    let version = (vf >> 24) as u8;
    let flags = vf & 0x00FF_FFFF;
    let count = r.u32().ok_or("short trun")?;
    let data_offset = if flags & TRUN_DATA_OFFSET != 0 { Some(r.u32().ok_or("short trun")? as i32) } else { None };
    let first_sample_flags =
        if flags & TRUN_FIRST_SAMPLE_FLAGS != 0 { Some(r.u32().ok_or("short trun")?) } else { None };
    let stride = [TRUN_DURATION, TRUN_SIZE, TRUN_FLAGS, TRUN_CTS].iter().filter(|&&f| flags & f != 0).count() * 4;
    let len = usize::try_from(count).ok().and_then(|n| n.checked_mul(stride)).ok_or("trun too long")?;
    if len > r.remaining() {
        return Err("trun entries overrun the box".into());
    }
    let entries = r.pos..r.pos + len;
    Ok(Run { version, flags, count, data_offset, first_sample_flags, entries, stride })
}

/// One sample of a run: its duration and size (from the entry or the defaults) and where its
/// entry bytes are in the moof buffer.
#[derive(Debug, Clone)]
pub struct Sample {
    pub duration: u32,
    pub size: u32,
    pub entry: Range<usize>,
}

impl Run {
    /// The run's samples with durations and sizes resolved through `tfhd` and `trex`
    /// defaults; an error if one is missing. `count` may be huge only when the entries are
    /// empty (all from defaults): callers bound the iteration by the sample data.
    pub fn samples<'a>(
        &'a self,
        buf: &'a [u8],
        traf: &Traf,
        trex: Option<Trex>,
    ) -> Result<impl Iterator<Item = Sample> + 'a, String> {
        let default_duration = traf.default_duration.or(trex.map(|t| t.duration));
        let default_size = traf.default_size.or(trex.map(|t| t.size));
        if self.flags & TRUN_DURATION == 0 && default_duration.is_none() {
            return Err("sample duration neither in trun nor in a default".into());
        }
        if self.flags & TRUN_SIZE == 0 && default_size.is_none() {
            return Err("sample size neither in trun nor in a default".into());
        }
        let flags = self.flags;
        let stride = self.stride;
        let start = self.entries.start;
        Ok((0..self.count as usize).map(move |i| {
            let entry = start + i * stride..start + (i + 1) * stride;
            let mut r = Reader::of(buf, &entry);
            // parse_trun checked that count * stride bytes are there, so these reads succeed.
            let duration = if flags & TRUN_DURATION != 0 { r.u32() } else { default_duration };
            let size = if flags & TRUN_SIZE != 0 { r.u32() } else { default_size };
            Sample { duration: duration.unwrap_or(0), size: size.unwrap_or(0), entry }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mp4box(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        [&((body.len() + 8) as u32).to_be_bytes()[..], kind, body].concat()
    }

    fn full(version: u8, body: &[u8]) -> Vec<u8> {
        [&[version, 0, 0, 0][..], body].concat()
    }

    /// The boxes of a minimal valid fragmented moov, by name, so a test can damage one.
    fn moov_with(replace: Option<(&[u8; 4], &[u8])>) -> Vec<u8> {
        let body = |kind: &[u8; 4], good: Vec<u8>| match replace {
            Some((k, b)) if k == kind => mp4box(kind, b),
            _ => mp4box(kind, &good),
        };
        let mvhd = body(b"mvhd", full(0, &[&[0u8; 8][..], &1000u32.to_be_bytes(), &[0u8; 84]].concat()));
        let tkhd = body(b"tkhd", full(0, &[&[0u8; 8][..], &1u32.to_be_bytes(), &[0u8; 68]].concat()));
        let mdhd = body(b"mdhd", full(0, &[&[0u8; 8][..], &44100u32.to_be_bytes(), &[0u8; 8]].concat()));
        let hdlr = body(b"hdlr", full(0, &[&[0u8; 4][..], b"soun", &[0u8; 13]].concat()));
        let mehd = body(b"mehd", full(0, &[0u8; 4]));
        let trex = body(b"trex", full(0, &[&1u32.to_be_bytes()[..], &[0u8; 16]].concat()));
        let trak = mp4box(b"trak", &[tkhd, mp4box(b"mdia", &[mdhd, hdlr].concat())].concat());
        mp4box(b"moov", &[mvhd, trak, mp4box(b"mvex", &[mehd, trex].concat())].concat())
    }

    #[test]
    fn empty_and_short_bodies_are_errors_not_panics() {
        let moov = parse_moov(&moov_with(None)).unwrap();
        assert_eq!((moov.movie_timescale, moov.tracks[0].timescale, moov.tracks[0].id), (1000, 44100, 1));
        assert!(moov.fragmented && moov.mehd.is_some() && moov.tracks[0].trex.is_some());
        // Bodies cut below what their version needs (mehd v0 needs 8 bytes, tkhd v0 24, ...).
        for (kind, needed) in [(b"mvhd", 20), (b"tkhd", 24), (b"mdhd", 20), (b"mehd", 8), (b"trex", 20)] {
            for len in 0..needed {
                let damaged = moov_with(Some((kind, &full(0, &[0u8; 24])[..len])));
                assert!(parse_moov(&damaged).is_err(), "{} with {len} bytes", show(*kind));
            }
            // Version 1 of a v0-sized body is too short too; version 2 does not exist.
            let v1 = moov_with(Some((kind, &full(1, &[0u8; 20])[..needed])));
            let v2 = moov_with(Some((kind, &full(2, &[0u8; 20])[..needed])));
            if kind != b"trex" {
                assert!(parse_moov(&v1).is_err(), "{} v1", show(*kind));
            }
            assert!(parse_moov(&v2).is_err(), "{} v2", show(*kind));
        }
        for kind in [b"mfhd", b"tfhd", b"trun"] {
            let inner = mp4box(kind, &[]);
            let moof = mp4box(b"moof", &if kind == b"mfhd" { inner } else { mp4box(b"traf", &inner) });
            assert!(parse_moof(&moof).is_err(), "{}", show(*kind));
        }
    }

    #[test]
    fn trun_counts_are_checked_against_the_box() {
        // flags: per-sample duration and size (8 bytes each); 2^30 samples claimed, 1 present.
        let body = [&0x0000_0300u32.to_be_bytes()[..], &(1u32 << 30).to_be_bytes(), &[0u8; 8]].concat();
        let moof = mp4box(
            b"moof",
            &[
                mp4box(b"mfhd", &[0, 0, 0, 0, 0, 0, 0, 1]),
                mp4box(b"traf", &[mp4box(b"tfhd", &[0, 0, 0, 0, 0, 0, 0, 1]), mp4box(b"trun", &body)].concat()),
            ]
            .concat(),
        );
        assert_eq!(parse_moof(&moof).unwrap_err(), "trun entries overrun the box");
    }

    #[test]
    fn children_reject_overruns_and_tiny_sizes() {
        assert!(children(&[0, 0, 0, 9, b'f', b'r', b'e', b'e'], 0..8).is_err());
        assert!(children(&[0, 0, 0, 4, b'f', b'r', b'e', b'e'], 0..8).is_err());
        assert!(children(&[0, 0, 0, 1, b'f', b'r', b'e', b'e', 0, 0, 0, 0, 0, 0, 0, 8], 0..16).is_err());
        let ok = children(&[0, 0, 0, 8, b'f', b'r', b'e', b'e'], 0..8).unwrap();
        assert_eq!(ok.len(), 1);
        assert_eq!(ok[0].data, 8..8);
    }
}
