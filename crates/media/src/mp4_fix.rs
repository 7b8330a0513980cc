//! The MP4 fixer: turns a MediaRecorder fragmented MP4 (WebKit's, see [`crate::mp4_scan`] for
//! its quirks) into one with the real duration and an index, keeping every kept audio sample
//! byte for byte; optionally cuts spans of media time out at sample granularity.
//!
//! Two passes over the input. Pass 1 ([`crate::mp4_scan`]) decides which fragments and samples
//! are kept and how long each rewritten fragment is. Pass 2 writes:
//!
//! ```text
//! ftyp             the first one, byte for byte
//! moov             byte for byte except the durations of mvhd, tkhd, mdhd and mehd
//! sidx             one reference per fragment (or per group of fragments past 65 535)
//! moof             per kept fragment, rewritten: mfhd (sequence 1, 2, ...), traf { tfhd (no
//!                  base data offset), tfdt (version 1, contiguous from 0), trun... (kept
//!                  entries byte for byte, a data offset into the mdat that follows) }
//! mdat             the kept samples' bytes, in order
//! ...
//! ```
//!
//! Other boxes (free, an old sidx or mfra, udta at the top level) are dropped, and so are traf
//! children other than tfhd, tfdt and trun (sample groups, encryption info: MediaRecorder
//! writes none). Every position is known after pass 1, so the index comes first.
//!
//! # What the browsers here need (a local check on the fixtures and a 60-minute take built
//! from them, served with Range support; Chromium 156, Firefox ESR 153, WebKitGTK 2.50)
//! - The duration in mvhd / mehd. Without it WebKitGTK reports the first fragment (0.998 s
//!   for the 5 s take) and clamps seeks there, and Firefox reports what it has scanned so far
//!   (183 s of the 60-minute take). With it all three report 4.923 s / 3594.449 s at
//!   `loadedmetadata`.
//! - No stale moof: Firefox stops with MEDIA_ERR_DECODE at WebKit's duplicate; the fixed file
//!   plays to the end and a seek to 2.5 s lands at 2.5 s.
//! - The sidx, for Chromium: without one its demuxer reads the whole file before
//!   `loadedmetadata` (34.8 MB of the 60-minute take); with one it reads a few MB and a seek
//!   to 30 min is one range request at the target. Firefox scans the moofs from the start
//!   whatever the index (about 15 MB read to reach 30 min; seek lands exactly); WebKitGTK
//!   downloads the file front to back and asked for no index. No browser used an `mfra`
//!   (Chromium only made extra requests for it), so none is written. A faststart-style
//!   rewrite (one moov with full sample tables) would make Firefox's seeks one request too,
//!   at the price of a moov of about 10 KB per minute read before playback starts.

use std::io::{self, BufWriter, Read, Seek, Write};
use std::ops::Range;
use std::path::Path;

use crate::mp4::{self, TFHD_BASE_DATA_OFFSET, TRUN_DATA_OFFSET};
use crate::mp4_scan::{self, Cuts, Fragment, Mp4Scan, PlanContext};
use crate::source::SeekSource;
use crate::{CountingWriter, MediaError};

/// What [`fix_mp4`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mp4FixReport {
    /// The kept samples' total duration in ms (rounded): what mdhd now says.
    pub duration_ms: u64,
    /// Media removed by the cut, in ms.
    pub removed_ms: u64,
    pub fragments: usize,
    pub samples: u64,
    /// Stale `moof` copies and repeated `ftyp`s dropped.
    pub dropped_moofs: usize,
    pub dropped_ftyps: usize,
    /// Bytes of the input up to the end of the last box or sample kept.
    pub input_bytes_used: u64,
    pub dropped_tail_bytes: u64,
    pub output_bytes: u64,
}

/// sidx references in one box (reference_count is 16 bits).
const MAX_SIDX_REFERENCES: u64 = 65_535;

/// Streams `input` to `output` (see the module docs). `cut_ms`: spans of media time to remove,
/// in ms from the start of the first sample (as a player shows it); a sample is removed when
/// it starts inside a span. The timeline stays contiguous.
///
/// A cut-off box or sample at the end is dropped. On any other problem, and on an MP4 this does
/// not fix (not fragmented, more than one track), nothing is written and
/// [`MediaError::NotMp4`] (or [`MediaError::Limit`]) is returned.
pub fn fix_mp4<R: Read + Seek, W: Write>(
    input: R,
    output: W,
    cut_ms: &[Range<u64>],
) -> Result<Mp4FixReport, MediaError> {
    let mut src = SeekSource::new(input)?;
    let input_len = src.len();
    let scan = mp4_scan::scan(&mut src, input_len, cut_ms)?;
    let timescale = scan.timescale();
    let moov = patched_moov(&scan)?;
    let sidx = Sidx::new(&scan)?;
    let ftyp_len = scan.ftyp.end - scan.ftyp.start;
    let first_moof = ftyp_len + moov.len() as u64 + sidx.len();
    let fragments_len: u64 = scan.fragments.iter().map(|f| f.out_len).sum();
    let planned = first_moof + fragments_len;

    let mut out = CountingWriter { inner: BufWriter::with_capacity(64 * 1024, output), count: 0 };
    src.seek_to(scan.ftyp.start)?;
    src.copy_to(ftyp_len, &mut out)?;
    out.write_all(&moov)?;
    sidx.write(&mut out)?;
    let cuts = Cuts::from_ms(cut_ms, timescale);
    let mut time_out = 0u64;
    let mut buf = Vec::new();
    for (index, f) in scan.fragments.iter().enumerate() {
        let start = out.count;
        write_fragment(&mut src, &mut out, &scan, f, &cuts, index as u32 + 1, time_out, &mut buf)?;
        if out.count - start != f.out_len {
            return Err(io::Error::other("a fragment came out with another length than planned").into());
        }
        time_out += f.duration;
    }
    out.flush()?;
    if out.count != planned {
        // A bug in the layout arithmetic, not a property of the input.
        return Err(io::Error::other(format!("wrote {} bytes, planned {planned}", out.count)).into());
    }

    Ok(Mp4FixReport {
        duration_ms: ms(scan.duration, timescale),
        removed_ms: ms(scan.input_duration, timescale).saturating_sub(ms(scan.duration, timescale)),
        fragments: scan.fragments.len(),
        samples: scan.samples,
        dropped_moofs: scan.dropped_moofs,
        dropped_ftyps: scan.dropped_ftyps,
        input_bytes_used: scan.used,
        dropped_tail_bytes: input_len.saturating_sub(scan.used),
        output_bytes: out.count,
    })
}

/// [`fix_mp4`] from one file to another, buffered; the output is fsynced before returning.
/// On error the output file is removed. `input` and `output` must be different files.
pub fn fix_mp4_file(input: &Path, output: &Path, cut_ms: &[Range<u64>]) -> Result<Mp4FixReport, MediaError> {
    crate::fix_file(input, output, |r, w| fix_mp4(r, w, cut_ms))
}

/// `ticks` of `timescale` in ms, rounded.
pub fn ms(ticks: u64, timescale: u32) -> u64 {
    if timescale == 0 {
        return 0;
    }
    let ts = u128::from(timescale);
    ((u128::from(ticks) * 1000 + ts / 2) / ts).min(u128::from(u64::MAX)) as u64
}

/// The moov with the real duration in mvhd, tkhd and mehd (movie timescale) and mdhd (track
/// timescale). A version-0 box whose duration does not fit 32 bits is refused rather than
/// grown (27 hours at 44.1 kHz).
fn patched_moov(scan: &Mp4Scan) -> Result<Vec<u8>, MediaError> {
    let track = &scan.moov.tracks[scan.track];
    let movie_ts = u128::from(scan.moov.movie_timescale);
    let ts = u128::from(track.timescale);
    let movie = ((u128::from(scan.duration) * movie_ts + ts / 2) / ts).min(u128::from(u64::MAX)) as u64;
    let mut moov = scan.moov_bytes.clone();
    let mut fields =
        vec![(scan.moov.mvhd_duration, movie), (track.tkhd_duration, movie), (track.mdhd_duration, scan.duration)];
    if let Some((_, field)) = scan.moov.mehd {
        fields.push((field, movie));
    }
    for (field, value) in fields {
        if !field.patch(&mut moov, value) {
            return Err(MediaError::Limit(format!("duration {value} does not fit a version 0 box")));
        }
    }
    Ok(moov)
}

/// The sidx: one reference per fragment, or per group of consecutive fragments when there are
/// more than 65 535.
struct Sidx {
    track_id: u32,
    timescale: u32,
    /// (referenced size, duration) per reference.
    references: Vec<(u32, u32)>,
}

impl Sidx {
    fn new(scan: &Mp4Scan) -> Result<Sidx, MediaError> {
        let n = scan.fragments.len() as u64;
        let group = n.div_ceil(MAX_SIDX_REFERENCES).max(1) as usize;
        let mut references = Vec::with_capacity(scan.fragments.len().div_ceil(group));
        for chunk in scan.fragments.chunks(group) {
            let size: u64 = chunk.iter().map(|f| f.out_len).sum();
            let duration: u64 = chunk.iter().map(|f| f.duration).sum();
            // referenced_size has 31 bits, subsegment_duration 32.
            let (Some(size), Ok(duration)) =
                (u32::try_from(size).ok().filter(|&s| s < 1 << 31), u32::try_from(duration))
            else {
                return Err(MediaError::Limit("a fragment too large or too long for a sidx".into()));
            };
            references.push((size, duration));
        }
        let track = &scan.moov.tracks[scan.track];
        Ok(Sidx { track_id: track.id, timescale: track.timescale, references })
    }

    fn len(&self) -> u64 {
        if self.references.is_empty() { 0 } else { 32 + 12 * self.references.len() as u64 }
    }

    fn write<W: Write>(&self, out: &mut W) -> io::Result<()> {
        if self.references.is_empty() {
            return Ok(());
        }
        out.write_all(&(self.len() as u32).to_be_bytes())?;
        out.write_all(b"sidx")?;
        out.write_all(&0u32.to_be_bytes())?; // version 0, flags
        out.write_all(&self.track_id.to_be_bytes())?;
        out.write_all(&self.timescale.to_be_bytes())?;
        out.write_all(&0u32.to_be_bytes())?; // earliest_presentation_time
        out.write_all(&0u32.to_be_bytes())?; // first_offset: the first moof follows
        out.write_all(&0u16.to_be_bytes())?; // reserved
        out.write_all(&(self.references.len() as u16).to_be_bytes())?;
        for &(size, duration) in &self.references {
            out.write_all(&size.to_be_bytes())?; // reference_type 0 (media)
            out.write_all(&duration.to_be_bytes())?;
            // starts_with_SAP 1, SAP_type 1: every AAC frame can start playback.
            out.write_all(&0x9000_0000u32.to_be_bytes())?;
        }
        Ok(())
    }
}

/// Pass 2 for one fragment: reads its moof again, plans it as pass 1 did, writes the new moof
/// and an mdat of the kept samples' bytes.
#[allow(clippy::too_many_arguments)]
fn write_fragment<R: Read + Seek, W: Write>(
    src: &mut SeekSource<R>,
    out: &mut W,
    scan: &Mp4Scan,
    f: &Fragment,
    cuts: &Cuts,
    sequence: u32,
    time_out: u64,
    buf: &mut Vec<u8>,
) -> Result<(), MediaError> {
    use crate::source::Source;
    let changed = || MediaError::Io(io::Error::other("the input changed between the two passes"));
    src.seek_to(f.moof_start)?;
    buf.clear();
    src.read_append(u64::from(f.moof_len), buf).map_err(|_| changed())?;
    let moof = mp4::parse_moof(buf).map_err(|_| changed())?;
    // Pass 1 checked where the data lies; here only the same decisions are needed.
    let ctx = PlanContext {
        trex: scan.trex(),
        mdat: 0..u64::MAX,
        input_len: src.len(),
        data_floor: 0,
        time_in: f.time_in,
        cuts,
    };
    let plan = mp4_scan::plan(buf, &moof, f.moof_start, &ctx).map_err(|_| changed())?;
    let moof_len = mp4_scan::out_moof_len(&moof, &plan);
    let mdat_header = mp4_scan::mdat_header_len(plan.data_len);
    let traf = &moof.traf;

    let mut m = Vec::with_capacity(moof_len as usize);
    m.extend_from_slice(&(moof_len as u32).to_be_bytes());
    m.extend_from_slice(b"moof");
    m.extend_from_slice(&16u32.to_be_bytes());
    m.extend_from_slice(b"mfhd");
    m.extend_from_slice(&0u32.to_be_bytes());
    m.extend_from_slice(&sequence.to_be_bytes());
    let traf_len = moof_len - 8 - 16;
    m.extend_from_slice(&(traf_len as u32).to_be_bytes());
    m.extend_from_slice(b"traf");
    let opt: Vec<u32> = [traf.sample_description_index, traf.default_duration, traf.default_size, traf.default_flags]
        .into_iter()
        .flatten()
        .collect();
    m.extend_from_slice(&((16 + 4 * opt.len()) as u32).to_be_bytes());
    m.extend_from_slice(b"tfhd");
    m.extend_from_slice(&(traf.tfhd_flags & !TFHD_BASE_DATA_OFFSET).to_be_bytes());
    m.extend_from_slice(&traf.track_id.to_be_bytes());
    for v in opt {
        m.extend_from_slice(&v.to_be_bytes());
    }
    m.extend_from_slice(&20u32.to_be_bytes());
    m.extend_from_slice(b"tfdt");
    m.extend_from_slice(&0x0100_0000u32.to_be_bytes());
    m.extend_from_slice(&time_out.to_be_bytes());
    let mut data_at = moof_len + mdat_header;
    for p in &plan.runs {
        let run = &traf.runs[p.run];
        let entries: usize = p.spans.iter().map(|s| s.entries.len()).sum();
        let len = 20 + if run.first_sample_flags.is_some() { 4 } else { 0 } + entries;
        m.extend_from_slice(&(len as u32).to_be_bytes());
        m.extend_from_slice(b"trun");
        m.extend_from_slice(&((u32::from(run.version) << 24) | run.flags | TRUN_DATA_OFFSET).to_be_bytes());
        m.extend_from_slice(&p.samples.to_be_bytes());
        let offset = i32::try_from(data_at).map_err(|_| MediaError::Limit("fragment over 2 GB".into()))?;
        m.extend_from_slice(&offset.to_be_bytes());
        if let Some(flags) = run.first_sample_flags {
            m.extend_from_slice(&flags.to_be_bytes());
        }
        for s in &p.spans {
            m.extend_from_slice(&buf[s.entries.clone()]);
            data_at += s.data.end - s.data.start;
        }
    }
    if m.len() as u64 != moof_len {
        return Err(io::Error::other("moof length differs from its plan").into());
    }
    out.write_all(&m)?;
    if mdat_header == 16 {
        out.write_all(&1u32.to_be_bytes())?;
        out.write_all(b"mdat")?;
        out.write_all(&(plan.data_len + 16).to_be_bytes())?;
    } else {
        out.write_all(&((plan.data_len + 8) as u32).to_be_bytes())?;
        out.write_all(b"mdat")?;
    }
    for s in plan.runs.iter().flat_map(|p| &p.spans) {
        src.seek_to(s.data.start)?;
        src.copy_to(s.data.end - s.data.start, out)?;
    }
    Ok(())
}
