//! The WebM fixer: adds a Duration and Cues to a MediaRecorder file without touching the
//! clusters.
//!
//! Two passes over the input. Pass 1 ([`crate::scan`]) records where every top-level element
//! is, each cluster's timecode, and the last block of each track. Pass 2 writes:
//!
//! ```text
//! EBML header        copied byte for byte
//! Segment            known 8-byte size (see below)
//!   SeekHead         rebuilt: Info, Tracks, Cues, Tags, Chapters, Attachments
//!   Info             rebuilt: old children + 8-byte float Duration
//!   Tracks, Tags...  copied, in their original order
//!   Cues             rebuilt, just before the first Cluster
//!   Cluster...       copied byte for byte
//! ```
//!
//! The Segment is written with a known size: after pass 1 the output length is known, and a
//! known size lets readers tell a complete file from a cut one. SeekHead and Cues use
//! fixed-width numbers, so their length depends only on the number of entries and every
//! position can be computed before anything is written.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Seek, Write};
use std::path::Path;

use crate::ebml::{self, SeekSource, Source};
use crate::scan::{self, BlockInfo, Item, PayloadMode, Scan, TrackMeta};
use crate::{MediaError, opus};

/// What [`fix_webm`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixReport {
    /// Last block's absolute time + that block's packet duration, in ms (rounded).
    pub duration_ms: u64,
    pub clusters: usize,
    pub blocks: usize,
    /// Bytes of the input kept (input minus a dropped cut-off tail).
    pub input_bytes_used: u64,
    pub dropped_tail_bytes: u64,
    pub output_bytes: u64,
}

/// Size of one Seek entry: Seek(2+1) { SeekID(2+1+4), SeekPosition(2+1+8) }.
const SEEK_ENTRY_LEN: u64 = 3 + 7 + 11;
/// Size of one CuePoint: CuePoint(1+1) { CueTime(1+1+8), CueTrackPositions(1+1) {
/// CueTrack(1+1+8), CueClusterPosition(1+1+8) } }.
const CUE_POINT_LEN: u64 = 2 + 10 + 2 + 10 + 10;
/// ID (4 bytes) + 8-byte size of SeekHead / Cues / Segment.
const MASTER_HEADER_LEN: u64 = 12;

/// Streams `input` to `output`, adding Duration and Cues (see the module docs for the layout).
///
/// The Segment is written with a known 8-byte size. Clusters are copied byte for byte; the
/// only exception is a known-size cluster cut off by the end of the input, whose size field
/// is rewritten (same width) to cover the complete blocks kept. A cluster's Position element,
/// if a muxer wrote one, is copied as is and may then be stale (MediaRecorder writes none).
///
/// A cut-off element at the end of the input is dropped. On any other problem, nothing is
/// written and [`MediaError::NotWebM`] is returned. Memory grows with the number of clusters
/// only.
pub fn fix_webm<R: Read + Seek, W: Write>(input: R, output: W) -> Result<FixReport, MediaError> {
    let mut src = SeekSource::new(input)?;
    let input_len = src.len();
    let mut ends = TrackEnds::default();
    let scan = scan::scan(&mut src, PayloadMode::Prefix, |b| ends.add(b))?;

    let duration_ns = ends.duration_ns(&scan.tracks, scan.timecode_scale);
    let info = build_info(&scan, duration_ns as f64 / scan.timecode_scale as f64);
    let layout = Layout::new(&scan, info.len() as u64);

    let mut out = CountingWriter { inner: BufWriter::with_capacity(64 * 1024, output), count: 0 };
    src.seek_to(0)?;
    src.copy_to(scan.ebml_header_end, &mut out)?;
    ebml::write_id(&mut out, ebml::SEGMENT)?;
    ebml::write_size(&mut out, layout.segment_size, 8)?;
    write_seek_head(&mut out, &layout.seeks)?;
    let mut cues_written = false;
    for item in &scan.items {
        match *item {
            Item::Info => out.write_all(&info)?,
            Item::Copy { start, end, .. } => {
                src.seek_to(start)?;
                src.copy_to(end - start, &mut out)?;
            }
            Item::Cluster { start, end, size_pos, size_len, new_size, .. } => {
                if !cues_written {
                    write_cues(&mut out, &layout.cues, cue_track(&scan.tracks))?;
                    cues_written = true;
                }
                src.seek_to(start)?;
                if let Some(size) = new_size {
                    src.copy_to(size_pos - start, &mut out)?;
                    ebml::write_size(&mut out, size, size_len)?;
                    src.seek_to(size_pos + size_len as u64)?;
                }
                src.copy_to(end - src.pos(), &mut out)?;
            }
        }
    }
    out.flush()?;
    let expected = scan.ebml_header_end + MASTER_HEADER_LEN + layout.segment_size;
    if out.count != expected {
        // A bug in the layout arithmetic, not a property of the input.
        return Err(io::Error::other(format!("wrote {} bytes, planned {expected}", out.count)).into());
    }

    Ok(FixReport {
        duration_ms: (duration_ns + 500_000) / 1_000_000,
        clusters: layout.cues.len(),
        blocks: scan.blocks,
        input_bytes_used: scan.used,
        dropped_tail_bytes: input_len - scan.used,
        output_bytes: out.count,
    })
}

/// [`fix_webm`] from one file to another, buffered; the output is fsynced before returning.
/// On error the output file is removed. `input` and `output` must be different files.
pub fn fix_webm_file(input: &Path, output: &Path) -> Result<FixReport, MediaError> {
    if output.exists() && fs::canonicalize(input)? == fs::canonicalize(output)? {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "input and output are the same file").into());
    }
    let input = File::open(input)?;
    let mut out = File::create(output)?;
    let result = fix_webm(input, &mut out).and_then(|report| {
        out.sync_all()?;
        Ok(report)
    });
    if result.is_err() {
        drop(out);
        let _ = fs::remove_file(output);
    }
    result
}

/// Where things go in the output, relative to the Segment's data start (the origin of
/// SeekPosition and CueClusterPosition).
struct Layout {
    segment_size: u64,
    /// (element ID, position).
    seeks: Vec<(u32, u64)>,
    /// (cluster timecode, position), one per cluster.
    cues: Vec<(u64, u64)>,
}

impl Layout {
    fn new(scan: &Scan, info_len: u64) -> Layout {
        let clusters = scan.items.iter().filter(|i| matches!(i, Item::Cluster { .. })).count() as u64;
        let cues_len = if clusters > 0 { MASTER_HEADER_LEN + CUE_POINT_LEN * clusters } else { 0 };
        let indexed = |id| matches!(id, ebml::TRACKS | ebml::TAGS | ebml::CHAPTERS | ebml::ATTACHMENTS);
        let seek_count = scan
            .items
            .iter()
            .filter(|i| match i {
                Item::Info => true,
                Item::Copy { id, .. } => indexed(*id),
                Item::Cluster { .. } => false,
            })
            .count() as u64
            + u64::from(clusters > 0);

        let mut pos = MASTER_HEADER_LEN + SEEK_ENTRY_LEN * seek_count;
        let mut seeks = Vec::new();
        let mut cues = Vec::new();
        for item in &scan.items {
            match *item {
                Item::Info => {
                    seeks.push((ebml::INFO, pos));
                    pos += info_len;
                }
                Item::Copy { id, start, end } => {
                    if indexed(id) {
                        seeks.push((id, pos));
                    }
                    pos += end - start;
                }
                Item::Cluster { start, end, timecode, .. } => {
                    if cues.is_empty() {
                        seeks.push((ebml::CUES, pos));
                        pos += cues_len;
                    }
                    cues.push((timecode, pos));
                    pos += end - start;
                }
            }
        }
        Layout { segment_size: pos, seeks, cues }
    }
}

fn build_info(scan: &Scan, duration: f64) -> Vec<u8> {
    let mut body = scan.info_children.clone();
    ebml::write_id(&mut body, ebml::DURATION).unwrap();
    ebml::write_size(&mut body, 8, 1).unwrap();
    body.extend_from_slice(&duration.to_be_bytes());
    let mut info = Vec::with_capacity(body.len() + 12);
    ebml::write_id(&mut info, ebml::INFO).unwrap();
    let len = body.len() as u64;
    ebml::write_size(&mut info, len, ebml::size_width(len)).unwrap();
    info.extend_from_slice(&body);
    info
}

fn write_seek_head<W: Write>(out: &mut W, seeks: &[(u32, u64)]) -> io::Result<()> {
    ebml::write_id(out, ebml::SEEK_HEAD)?;
    ebml::write_size(out, SEEK_ENTRY_LEN * seeks.len() as u64, 8)?;
    for &(id, pos) in seeks {
        ebml::write_id(out, ebml::SEEK)?;
        ebml::write_size(out, SEEK_ENTRY_LEN - 3, 1)?;
        ebml::write_id(out, ebml::SEEK_ID)?;
        ebml::write_size(out, 4, 1)?;
        out.write_all(&id.to_be_bytes())?;
        ebml::write_id(out, ebml::SEEK_POSITION)?;
        ebml::write_size(out, 8, 1)?;
        out.write_all(&pos.to_be_bytes())?;
    }
    Ok(())
}

fn write_cues<W: Write>(out: &mut W, cues: &[(u64, u64)], track: u64) -> io::Result<()> {
    ebml::write_id(out, ebml::CUES)?;
    ebml::write_size(out, CUE_POINT_LEN * cues.len() as u64, 8)?;
    for &(time, pos) in cues {
        ebml::write_id(out, ebml::CUE_POINT)?;
        ebml::write_size(out, CUE_POINT_LEN - 2, 1)?;
        ebml::write_u64_element(out, ebml::CUE_TIME, time)?;
        ebml::write_id(out, ebml::CUE_TRACK_POSITIONS)?;
        ebml::write_size(out, 20, 1)?;
        ebml::write_u64_element(out, ebml::CUE_TRACK, track)?;
        ebml::write_u64_element(out, ebml::CUE_CLUSTER_POSITION, pos)?;
    }
    Ok(())
}

/// The track the cues point at: the first audio track (TrackType 2), else the first track.
fn cue_track(tracks: &[TrackMeta]) -> u64 {
    tracks.iter().find(|t| t.kind == 2).or(tracks.first()).map_or(1, |t| t.number)
}

/// The last two block times of each track and the first bytes of the last block: enough to
/// know where the media ends without keeping every block.
#[derive(Default)]
struct TrackEnds(Vec<TrackEnd>);

struct TrackEnd {
    track: u64,
    last: i64,
    prev: Option<i64>,
    head: Vec<u8>,
    laced: bool,
    duration: Option<u64>,
}

impl TrackEnds {
    fn add(&mut self, mut b: BlockInfo) {
        b.payload.truncate(2);
        match self.0.iter_mut().find(|t| t.track == b.track) {
            Some(t) => {
                t.prev = Some(t.last);
                t.last = b.time;
                t.head = b.payload;
                t.laced = b.laced;
                t.duration = b.duration;
            }
            None => self.0.push(TrackEnd {
                track: b.track,
                last: b.time,
                prev: None,
                head: b.payload,
                laced: b.laced,
                duration: b.duration,
            }),
        }
    }

    /// The latest end over all tracks, in ns. A block's length comes from BlockDuration, else
    /// the Opus TOC, else the gap between the track's last two blocks.
    fn duration_ns(&self, tracks: &[TrackMeta], scale: u64) -> u64 {
        let scale = scale as i128;
        self.0
            .iter()
            .map(|t| {
                let opus = tracks.iter().any(|m| m.number == t.track && m.codec == "A_OPUS");
                let len_ns = t
                    .duration
                    .map(|d| d as i128 * scale)
                    .or_else(|| {
                        (opus && !t.laced).then(|| opus::packet_duration_ns(&t.head)).flatten().map(|ns| ns as i128)
                    })
                    .or_else(|| t.prev.map(|p| (t.last as i128 - p as i128).max(0) * scale))
                    .unwrap_or(0);
                t.last as i128 * scale + len_ns
            })
            .max()
            .unwrap_or(0)
            .clamp(0, u64::MAX as i128) as u64
    }
}

struct CountingWriter<W: Write> {
    inner: W,
    count: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
