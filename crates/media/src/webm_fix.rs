//! The WebM fixer: adds a Duration and Cues to a MediaRecorder file and gives every element a
//! known size, without touching a block.
//!
//! Two passes over the input. Pass 1 ([`crate::webm_scan`]) records where every kept top-level
//! element is, each cluster's timecode, and the last block of each track. Pass 2 writes:
//!
//! ```text
//! EBML header        copied byte for byte
//! Segment            known 8-byte size (see below)
//!   SeekHead         rebuilt: Info, Tracks, Cues, Tags, Chapters, Attachments
//!   Info             rebuilt: old children + 8-byte float Duration
//!   Tracks, Tags...  copied, in their original order
//!   Cues             rebuilt, just before the first Cluster
//!   Cluster...       ID and a known 8-byte size, then the children copied byte for byte
//! ```
//!
//! The Segment and the Clusters are written with known sizes: after pass 1 the output length
//! is known, a known size lets readers tell a complete file from a cut one, and an
//! unknown-size Cluster inside a sized Segment makes ffmpeg warn ("Unknown-sized element
//! inside parent with finite size"). SeekHead and Cues use fixed-width numbers, so their
//! length depends only on the number of entries and every position can be computed before
//! anything is written.

use std::io::{self, BufWriter, Read, Seek, Write};
use std::path::Path;

use crate::ebml;
use crate::source::SeekSource;
use crate::webm_scan::{self, BlockInfo, Item, PayloadMode, Scan, TrackMeta};
use crate::{CountingWriter, MediaError, opus};

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
/// The Segment and every Cluster are written with a known 8-byte size; the clusters' children
/// are copied byte for byte. A cluster's Position or PrevSize element, if a muxer wrote one,
/// is copied as is and may then be stale (MediaRecorder writes neither).
///
/// A cut-off element at the end of the input is dropped. On any other problem nothing is
/// written and [`MediaError::NotWebM`] (or [`MediaError::Limit`]) is returned. Time is linear
/// in the input; memory grows with the number of clusters only (see [`crate::webm_scan`]).
pub fn fix_webm<R: Read + Seek, W: Write>(input: R, output: W) -> Result<FixReport, MediaError> {
    let mut src = SeekSource::new(input)?;
    let input_len = src.len();
    let mut ends = TrackEnds::default();
    let scan = webm_scan::scan(&mut src, PayloadMode::Prefix, |b| ends.add(&b))?;

    let duration_ns = ends.duration_ns(&scan.tracks, scan.timecode_scale);
    let info = build_info(&scan, duration_ns as f64 / scan.timecode_scale as f64)?;
    let layout = Layout::new(&scan, info.len() as u64)?;

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
            Item::Cluster { data_start, end, .. } => {
                if !cues_written {
                    write_cues(&mut out, &layout.cues, cue_track(&scan.tracks))?;
                    cues_written = true;
                }
                ebml::write_id(&mut out, ebml::CLUSTER)?;
                ebml::write_size(&mut out, end - data_start, 8)?;
                src.seek_to(data_start)?;
                src.copy_to(end - data_start, &mut out)?;
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
        duration_ms: duration_ns.saturating_add(500_000) / 1_000_000,
        clusters: layout.cues.len(),
        blocks: scan.blocks,
        input_bytes_used: scan.used,
        dropped_tail_bytes: input_len.saturating_sub(scan.used),
        output_bytes: out.count,
    })
}

/// [`fix_webm`] from one file to another, buffered; the output is fsynced before returning.
/// On error the output file is removed. `input` and `output` must be different files.
pub fn fix_webm_file(input: &Path, output: &Path) -> Result<FixReport, MediaError> {
    crate::fix_file(input, output, |r, w| fix_webm(r, w))
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

fn too_large() -> MediaError {
    MediaError::Limit("output larger than an 8-byte EBML size".into())
}

impl Layout {
    fn new(scan: &Scan, info_len: u64) -> Result<Layout, MediaError> {
        let clusters = scan.clusters as u64;
        let cues_len = if clusters > 0 { MASTER_HEADER_LEN + CUE_POINT_LEN * clusters } else { 0 };
        // One SeekHead entry per run of same-ID elements: Tracks after Tracks (with junk between
        // them in the input) share one, so fixing the output again gives the same SeekHead.
        let indexed = |i: usize| match &scan.items[i] {
            Item::Info => true,
            Item::Copy { id, .. } => {
                matches!(*id, ebml::TRACKS | ebml::TAGS | ebml::CHAPTERS | ebml::ATTACHMENTS)
                    && !matches!(i.checked_sub(1).map(|p| &scan.items[p]), Some(Item::Copy { id: prev, .. }) if prev == id)
            }
            Item::Cluster { .. } => false,
        };
        let seek_count = (0..scan.items.len()).filter(|&i| indexed(i)).count() as u64 + u64::from(clusters > 0);

        let mut pos = MASTER_HEADER_LEN + SEEK_ENTRY_LEN * seek_count;
        let mut seeks = Vec::new();
        let mut cues = Vec::with_capacity(scan.clusters);
        let advance = |pos: &mut u64, n: u64| pos.checked_add(n).map(|p| *pos = p).ok_or_else(too_large);
        for (i, item) in scan.items.iter().enumerate() {
            match *item {
                Item::Info => {
                    seeks.push((ebml::INFO, pos));
                    advance(&mut pos, info_len)?;
                }
                Item::Copy { id, start, end } => {
                    if indexed(i) {
                        seeks.push((id, pos));
                    }
                    advance(&mut pos, end - start)?;
                }
                Item::Cluster { data_start, end, timecode } => {
                    if cues.is_empty() {
                        seeks.push((ebml::CUES, pos));
                        advance(&mut pos, cues_len)?;
                    }
                    cues.push((timecode, pos));
                    advance(&mut pos, MASTER_HEADER_LEN)?;
                    advance(&mut pos, end - data_start)?;
                }
            }
        }
        if pos > ebml::max_size(8) {
            return Err(too_large());
        }
        Ok(Layout { segment_size: pos, seeks, cues })
    }
}

fn build_info(scan: &Scan, duration: f64) -> io::Result<Vec<u8>> {
    let mut body = scan.info_children.clone();
    ebml::write_id(&mut body, ebml::DURATION)?;
    ebml::write_size(&mut body, 8, 1)?;
    body.extend_from_slice(&duration.to_be_bytes());
    let mut info = Vec::with_capacity(body.len() + 12);
    ebml::write_id(&mut info, ebml::INFO)?;
    let len = body.len() as u64;
    ebml::write_size(&mut info, len, ebml::size_width(len))?;
    info.extend_from_slice(&body);
    Ok(info)
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

/// Per declared track (by index into the scan's tracks): the last two block times and the
/// first bytes of the last block, enough to know where the media ends without keeping every
/// block.
#[derive(Default)]
struct TrackEnds(Vec<Option<TrackEnd>>);

struct TrackEnd {
    last: i64,
    prev: Option<i64>,
    /// The last block's first two payload bytes (Opus TOC and frame count) and how many.
    head: [u8; 2],
    head_len: usize,
    laced: bool,
    duration: Option<u64>,
}

impl TrackEnds {
    fn add(&mut self, b: &BlockInfo<'_>) {
        // Indices are below MAX_TRACKS, so this stays small.
        if self.0.len() <= b.track {
            self.0.resize_with(b.track + 1, || None);
        }
        let head_len = b.payload.len().min(2);
        let mut head = [0u8; 2];
        head[..head_len].copy_from_slice(&b.payload[..head_len]);
        let prev = self.0[b.track].as_ref().map(|t| t.last);
        self.0[b.track] = Some(TrackEnd { last: b.time, prev, head, head_len, laced: b.laced, duration: b.duration });
    }

    /// The latest end over all tracks, in ns. A block's length comes from BlockDuration, else
    /// the Opus TOC, else the gap between the track's last two blocks.
    fn duration_ns(&self, tracks: &[TrackMeta], scale: u64) -> u64 {
        let scale = i128::from(scale);
        self.0
            .iter()
            .enumerate()
            .filter_map(|(i, t)| Some((tracks.get(i)?, t.as_ref()?)))
            .map(|(meta, t)| {
                let opus = meta.codec == "A_OPUS";
                let len_ns = t
                    .duration
                    .map(|d| i128::from(d).saturating_mul(scale))
                    .or_else(|| {
                        (opus && !t.laced)
                            .then(|| opus::packet_duration_ns(&t.head[..t.head_len]))
                            .flatten()
                            .map(i128::from)
                    })
                    .or_else(|| t.prev.map(|p| (i128::from(t.last) - i128::from(p)).max(0).saturating_mul(scale)))
                    .unwrap_or(0);
                i128::from(t.last).saturating_mul(scale).saturating_add(len_ns)
            })
            .max()
            .unwrap_or(0)
            .clamp(0, i128::from(u64::MAX)) as u64
    }
}
