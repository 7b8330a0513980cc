//! One streaming walk over a WebM file: where each kept top-level element is, the cluster
//! timecodes, the blocks, and where a cut-off tail starts.
//!
//! Used by the fixer's first pass (block payloads reduced to their first bytes) and by
//! [`crate::audio_blocks`] (whole payloads). Linear in the input and bounded in memory on any
//! input:
//! - one [`Item`] (32 bytes) per kept top-level element, that is about one per cluster, and at
//!   most [`MAX_KEPT_ITEMS`]: beyond that the walk fails with [`MediaError::Limit`] and the
//!   caller stores the bytes as received. Runs of copied elements share one item: the same ID
//!   (Tags after Tags), or IDs that are not Segment children in the Matroska spec (junk, kept
//!   byte for byte like everything the fixer does not understand), so millions of tiny
//!   elements cost one item.
//! - tracks come from Tracks (at most [`MAX_TRACKS`]) and are found through a hash map; a block
//!   whose track number Tracks does not declare is skipped, neither counted nor reported.
//! - every offset and time is computed with checked arithmetic; a value that does not fit is
//!   malformed input, never a wrapped number.

use std::collections::HashMap;

use crate::MediaError;
use crate::ebml::{self, Header, ReadError, ReadResult, Source, malformed};

/// Kept top-level elements (clusters, mostly) beyond which the walk gives up. MediaRecorder
/// writes about one cluster a second, so this is days of audio; 32 MB of items at most.
pub const MAX_KEPT_ITEMS: usize = 1_000_000;
/// TrackEntries beyond which the walk gives up (a recording has one).
pub const MAX_TRACKS: usize = 128;
/// The largest Info / Tracks / EBML header body we hold in memory. Real ones are tiny; the
/// limit keeps a corrupt size from allocating gigabytes.
const MAX_HEADER_BODY: u64 = 16 << 20;
/// The largest block whose whole payload [`PayloadMode::Full`] reads (Opus packets are a few
/// hundred bytes).
pub const MAX_BLOCK_BYTES: u64 = 16 << 20;
/// Block bytes the fixer looks at: the block header (track vint up to 8 bytes, timecode,
/// flags) plus the first two payload bytes (Opus TOC and frame count).
const BLOCK_PREFIX: u64 = 16;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum PayloadMode {
    /// Only the first payload bytes (enough for the Opus TOC); the rest is skipped.
    Prefix,
    /// The whole payload.
    Full,
}

/// A block as seen by the walk. The payload borrows the walk's buffer.
pub struct BlockInfo<'a> {
    /// Index into [`Scan::tracks`].
    pub track: usize,
    /// Absolute time in TimecodeScale units (cluster timecode + relative timecode).
    pub time: i64,
    /// Bytes after the block header: whole or prefix, depending on [`PayloadMode`].
    pub payload: &'a [u8],
    /// Xiph/EBML/fixed lacing in use: the payload starts with lace sizes, not a packet.
    pub laced: bool,
    /// BlockDuration of a BlockGroup, in TimecodeScale units.
    pub duration: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct TrackMeta {
    pub number: u64,
    pub kind: u64,
    pub codec: String,
}

/// A top-level element kept for the output, in input order.
#[derive(Debug, Clone)]
pub enum Item {
    /// The Info element: rebuilt from `Scan::info_children` plus a Duration.
    Info,
    /// Copied verbatim (Tracks, Tags, Chapters, ...): the bytes [start, end).
    Copy { id: u32, start: u64, end: u64 },
    /// A cluster: written with a known size over its complete children [data_start, end),
    /// which are copied byte for byte.
    Cluster { data_start: u64, end: u64, timecode: u64 },
}

#[derive(Debug)]
pub struct Scan {
    pub ebml_header_end: u64,
    pub items: Vec<Item>,
    pub clusters: usize,
    pub timecode_scale: u64,
    /// Info's children without Duration, Void and CRC-32 (which would be wrong after the
    /// rebuild), byte for byte.
    pub info_children: Vec<u8>,
    pub tracks: Vec<TrackMeta>,
    /// Track number -> index into `tracks`.
    track_index: HashMap<u64, usize>,
    /// Bytes of the input kept: everything before a cut-off tail.
    pub used: u64,
    /// Blocks of declared tracks.
    pub blocks: usize,
}

impl Scan {
    fn push(&mut self, item: Item) -> Result<(), MediaError> {
        if let (Item::Copy { id, start, end }, Some(Item::Copy { id: last_id, end: last_end, .. })) =
            (&item, self.items.last_mut())
            && (id == last_id || !is_segment_child(*id) && !is_segment_child(*last_id))
            && start == last_end
        {
            *last_end = *end;
            return Ok(());
        }
        if self.items.len() >= MAX_KEPT_ITEMS {
            return Err(MediaError::Limit(format!("more than {MAX_KEPT_ITEMS} top-level elements")));
        }
        if matches!(item, Item::Cluster { .. }) {
            self.clusters += 1;
        }
        self.items.push(item);
        Ok(())
    }
}

fn not_webm(e: ReadError, what: &str) -> MediaError {
    match e {
        ReadError::Io(e) => MediaError::Io(e),
        ReadError::Eof => MediaError::NotWebM(format!("input ends inside the {what}")),
        ReadError::Malformed(m) => MediaError::NotWebM(m),
    }
}

fn bad(msg: impl Into<String>) -> MediaError {
    MediaError::NotWebM(msg.into())
}

/// Segment children in the Matroska spec; any other ID at that level is dropped.
fn is_segment_child(id: u32) -> bool {
    matches!(
        id,
        ebml::SEEK_HEAD
            | ebml::INFO
            | ebml::TRACKS
            | ebml::CLUSTER
            | ebml::CUES
            | ebml::CHAPTERS
            | ebml::TAGS
            | ebml::ATTACHMENTS
            | ebml::VOID
            | ebml::CRC32
    )
}

/// The walk's state: the source, what was found so far, and a reusable block buffer.
struct Walk<'s, S, F> {
    src: &'s mut S,
    mode: PayloadMode,
    on_block: F,
    scan: Scan,
    block: Vec<u8>,
}

/// Walks the whole input. `on_block` sees every kept block of a declared track, in file order.
pub fn scan<S: Source>(
    src: &mut S,
    mode: PayloadMode,
    on_block: impl FnMut(BlockInfo<'_>),
) -> Result<Scan, MediaError> {
    let ebml_header_end = read_ebml_header(src)?;
    let scan = Scan {
        ebml_header_end,
        items: Vec::new(),
        clusters: 0,
        timecode_scale: 1_000_000,
        info_children: Vec::new(),
        tracks: Vec::new(),
        track_index: HashMap::new(),
        used: 0,
        blocks: 0,
    };
    let mut walk = Walk { src, mode, on_block, scan, block: Vec::new() };
    walk.segment()?;
    Ok(walk.scan)
}

impl<S: Source, F: FnMut(BlockInfo<'_>)> Walk<'_, S, F> {
    fn segment(&mut self) -> Result<(), MediaError> {
        // Segment, possibly after Void padding.
        let segment = loop {
            match ebml::read_header(self.src).map_err(|e| not_webm(e, "Segment header"))? {
                None => return Err(bad("no Segment")),
                Some(h) if h.id == ebml::VOID => {
                    let size = h.size.ok_or_else(|| bad("Void of unknown size"))?;
                    self.src.skip(size).map_err(|e| not_webm(e, "Segment header"))?;
                }
                Some(h) if h.id == ebml::SEGMENT => break h,
                Some(h) => return Err(bad(format!("expected a Segment, found ID 0x{:X}", h.id))),
            }
        };
        let seg_end = segment.end();
        let mut have_info = false;
        let mut pending: Option<Header> = None;

        // `used` ends up as the offset where the kept part of the input ends.
        let used = loop {
            let h = match pending.take() {
                Some(h) => h,
                None => {
                    if seg_end == Some(self.src.pos()) {
                        break self.src.pos();
                    }
                    let start = self.src.pos();
                    match ebml::read_header(self.src) {
                        Ok(None) => break self.src.pos(),
                        Ok(Some(h)) => h,
                        // The input ends inside this element's header.
                        Err(ReadError::Eof) => break start,
                        Err(e) => return Err(not_webm(e, "Segment")),
                    }
                }
            };
            if let (Some(se), Some(end)) = (seg_end, h.end())
                && end > se
            {
                return Err(bad(format!("element 0x{:X} overruns the Segment", h.id)));
            }
            match h.id {
                ebml::CLUSTER => {
                    let c = self.cluster(&h, seg_end)?;
                    match c.cut_at {
                        None => {
                            let timecode = c.timecode.ok_or_else(|| bad("Cluster without Timecode"))?;
                            self.scan.push(Item::Cluster { data_start: h.data_start, end: c.end, timecode })?;
                            pending = c.next;
                        }
                        // Cut off before its first complete block: drop the whole cluster.
                        Some(_) if c.blocks == 0 => break h.start,
                        Some(cut) => {
                            let timecode = c.timecode.ok_or_else(|| bad("Cluster without Timecode"))?;
                            self.scan.push(Item::Cluster { data_start: h.data_start, end: cut, timecode })?;
                            break cut;
                        }
                    }
                }
                ebml::EBML | ebml::SEGMENT => {
                    return Err(bad("more than one Segment (chained files are not supported)"));
                }
                id => {
                    let Some(size) = h.size else {
                        return Err(bad(format!("element 0x{id:X} of unknown size")));
                    };
                    let body = match id {
                        ebml::INFO | ebml::TRACKS if size > MAX_HEADER_BODY => {
                            return Err(bad("Info or Tracks too large"));
                        }
                        ebml::INFO | ebml::TRACKS => self.src.read_vec(size).map(Some),
                        _ => self.src.skip(size).map(|_| None),
                    };
                    let body = match body {
                        Ok(b) => b.unwrap_or_default(),
                        Err(ReadError::Eof) => break h.start,
                        Err(e) => return Err(not_webm(e, "Segment")),
                    };
                    let end = h.data_start.checked_add(size).ok_or_else(|| bad("element size overflows"))?;
                    match id {
                        ebml::INFO => {
                            if have_info {
                                return Err(bad("more than one Info"));
                            }
                            have_info = true;
                            parse_info(&body, &mut self.scan)?;
                            self.scan.push(Item::Info)?;
                        }
                        ebml::TRACKS => {
                            parse_tracks(&body, &mut self.scan)?;
                            self.scan.push(Item::Copy { id, start: h.start, end })?;
                        }
                        // Rebuilt (SeekHead, Cues) or dropped (Void, CRC-32): their positions and
                        // checksums would be wrong once Info grows.
                        ebml::SEEK_HEAD | ebml::CUES | ebml::VOID | ebml::CRC32 => {}
                        _ => self.scan.push(Item::Copy { id, start: h.start, end })?,
                    }
                }
            }
        };

        // A known-size Segment followed by more data: not something this fixer understands.
        if seg_end == Some(used) && self.src.read_byte().map_err(|e| not_webm(e, "tail"))?.is_some() {
            return Err(bad("data after the Segment"));
        }
        if !have_info {
            return Err(bad("no complete Info element"));
        }
        if self.scan.tracks.is_empty() {
            return Err(bad("no complete Tracks element"));
        }
        self.scan.used = used;
        Ok(())
    }

    fn cluster(&mut self, h: &Header, seg_end: Option<u64>) -> Result<ClusterScan, MediaError> {
        let mut c = ClusterScan { timecode: None, blocks: 0, end: 0, cut_at: None, next: None };
        // An unknown-size cluster ends at the Segment's end, the input's end, or the next
        // top-level ID.
        let limit = h.end().or(seg_end);
        loop {
            let child_start = self.src.pos();
            if limit == Some(child_start) {
                c.end = child_start;
                return Ok(c);
            }
            let child = match ebml::read_header(self.src) {
                Ok(Some(child)) => child,
                Ok(None) if h.size.is_none() => {
                    if c.blocks == 0 {
                        // The input ends before this cluster's first block: the start of a
                        // cluster the take never finished, dropped like any cut-off element.
                        c.cut_at = Some(child_start);
                    } else {
                        c.end = child_start;
                    }
                    return Ok(c);
                }
                // A known-size cluster that the input ends before: cut at a child boundary.
                Ok(None) | Err(ReadError::Eof) => {
                    c.cut_at = Some(child_start);
                    return Ok(c);
                }
                Err(e) => return Err(not_webm(e, "Cluster")),
            };
            if h.size.is_none() && ebml::is_top_level(child.id) {
                c.end = child_start;
                c.next = Some(child);
                return Ok(c);
            }
            let Some(size) = child.size else {
                return Err(bad(format!("cluster child 0x{:X} of unknown size", child.id)));
            };
            if let Some(limit) = limit
                && child.end().is_none_or(|end| end > limit)
            {
                return Err(bad(format!("cluster child 0x{:X} overruns its parent", child.id)));
            }
            let result = match child.id {
                ebml::TIMECODE if size <= 8 => self.src.read_vec(size).map(|v| {
                    c.timecode = ebml::uint_from_bytes(&v);
                    None
                }),
                ebml::SIMPLE_BLOCK => read_block(self.src, size, self.mode, &mut self.block).map(Some),
                ebml::BLOCK_GROUP => read_block_group(self.src, size, self.mode, &mut self.block),
                _ => self.src.skip(size).map(|_| None),
            };
            match result {
                Ok(None) => {}
                Ok(Some(block)) => {
                    let Some(tc) = c.timecode else {
                        return Err(bad("block before the cluster Timecode"));
                    };
                    // Complete, so the cluster is kept even if no block is of a declared track.
                    c.blocks += 1;
                    let Some(&track) = self.scan.track_index.get(&block.track) else {
                        // Not a declared track: ignored, as players do.
                        continue;
                    };
                    let time = i64::try_from(tc)
                        .ok()
                        .and_then(|tc| tc.checked_add(block.rel.into()))
                        .ok_or_else(|| bad("block time out of range"))?;
                    self.scan.blocks += 1;
                    (self.on_block)(BlockInfo {
                        track,
                        time,
                        payload: self.block.get(block.payload_at..).unwrap_or_default(),
                        laced: block.laced,
                        duration: block.duration,
                    });
                }
                Err(ReadError::Eof) => {
                    c.cut_at = Some(child_start);
                    return Ok(c);
                }
                Err(e) => return Err(not_webm(e, "Cluster")),
            }
        }
    }
}

fn read_ebml_header<S: Source>(src: &mut S) -> Result<u64, MediaError> {
    let h = match ebml::read_header(src) {
        Ok(Some(h)) => h,
        Ok(None) => return Err(bad("empty input")),
        Err(e) => return Err(not_webm(e, "EBML header")),
    };
    if h.id != ebml::EBML {
        return Err(bad("no EBML header"));
    }
    let size = h.size.filter(|&s| s <= 4096).ok_or_else(|| bad("bad EBML header size"))?;
    let body = src.read_vec(size).map_err(|e| not_webm(e, "EBML header"))?;
    let mut doc_type = None;
    for (id, _, data) in ebml::children(&body).map_err(|e| not_webm(e, "EBML header"))? {
        match id {
            ebml::DOC_TYPE => doc_type = Some(String::from_utf8_lossy(data).trim_end_matches('\0').to_owned()),
            // We write 8-byte sizes and 4-byte IDs; a file that forbids them is not ours to fix.
            ebml::EBML_MAX_SIZE_LENGTH if ebml::uint_from_bytes(data).unwrap_or(0) < 8 => {
                return Err(bad("EBMLMaxSizeLength below 8"));
            }
            ebml::EBML_MAX_ID_LENGTH if ebml::uint_from_bytes(data).unwrap_or(0) < 4 => {
                return Err(bad("EBMLMaxIDLength below 4"));
            }
            _ => {}
        }
    }
    match doc_type.as_deref() {
        Some("webm") | Some("matroska") => Ok(src.pos()),
        other => Err(bad(format!("DocType {other:?} is not webm"))),
    }
}

fn parse_info(body: &[u8], scan: &mut Scan) -> Result<(), MediaError> {
    for (id, whole, data) in ebml::children(body).map_err(|e| not_webm(e, "Info"))? {
        match id {
            ebml::TIMECODE_SCALE => {
                scan.timecode_scale =
                    ebml::uint_from_bytes(data).filter(|&s| s > 0).ok_or_else(|| bad("bad TimecodeScale"))?;
                scan.info_children.extend_from_slice(whole);
            }
            ebml::DURATION | ebml::VOID | ebml::CRC32 => {}
            _ => scan.info_children.extend_from_slice(whole),
        }
    }
    Ok(())
}

fn parse_tracks(body: &[u8], scan: &mut Scan) -> Result<(), MediaError> {
    for (id, _, entry) in ebml::children(body).map_err(|e| not_webm(e, "Tracks"))? {
        if id != ebml::TRACK_ENTRY {
            continue;
        }
        let mut t = TrackMeta { number: 0, kind: 0, codec: String::new() };
        for (id, _, data) in ebml::children(entry).map_err(|e| not_webm(e, "TrackEntry"))? {
            match id {
                ebml::TRACK_NUMBER => t.number = ebml::uint_from_bytes(data).unwrap_or(0),
                ebml::TRACK_TYPE => t.kind = ebml::uint_from_bytes(data).unwrap_or(0),
                ebml::CODEC_ID => t.codec = String::from_utf8_lossy(data).trim_end_matches('\0').to_owned(),
                _ => {}
            }
        }
        if t.number == 0 {
            return Err(bad("TrackEntry without TrackNumber"));
        }
        if scan.tracks.len() >= MAX_TRACKS {
            return Err(MediaError::Limit(format!("more than {MAX_TRACKS} tracks")));
        }
        if scan.track_index.insert(t.number, scan.tracks.len()).is_some() {
            return Err(bad(format!("two TrackEntries with TrackNumber {}", t.number)));
        }
        scan.tracks.push(t);
    }
    Ok(())
}

struct ClusterScan {
    timecode: Option<u64>,
    /// Complete blocks, of any track: a cluster cut off before its first one is dropped.
    blocks: usize,
    /// End of the cluster when it was complete.
    end: u64,
    /// Set when the input ended inside the cluster: offset of the first cut-off child.
    cut_at: Option<u64>,
    /// For an unknown-size cluster: the header of the top-level element that ended it.
    next: Option<Header>,
}

/// A Block / SimpleBlock header; its payload is in the walk's buffer from `payload_at`.
struct BlockHeader {
    track: u64,
    rel: i16,
    laced: bool,
    payload_at: usize,
    duration: Option<u64>,
}

/// Reads a Block / SimpleBlock body of `size` bytes, the payload (whole or prefix) into `buf`.
fn read_block<S: Source>(src: &mut S, size: u64, mode: PayloadMode, buf: &mut Vec<u8>) -> ReadResult<BlockHeader> {
    let take = match mode {
        PayloadMode::Full if size > MAX_BLOCK_BYTES => return malformed("block larger than 16 MB"),
        PayloadMode::Full => size,
        PayloadMode::Prefix => size.min(BLOCK_PREFIX),
    };
    buf.clear();
    src.read_append(take, buf)?;
    src.skip(size - take)?;
    let Some((track, n)) = ebml::vint_from_slice(buf) else {
        return malformed("bad block track number");
    };
    let Some(&[t0, t1, flags]) = buf.get(n..n + 3) else {
        return malformed("block shorter than its header");
    };
    Ok(BlockHeader {
        track,
        rel: i16::from_be_bytes([t0, t1]),
        laced: flags & 0x06 != 0,
        payload_at: n + 3,
        duration: None,
    })
}

fn read_block_group<S: Source>(
    src: &mut S,
    size: u64,
    mode: PayloadMode,
    buf: &mut Vec<u8>,
) -> ReadResult<Option<BlockHeader>> {
    let Some(end) = src.pos().checked_add(size) else {
        return malformed("BlockGroup size overflows");
    };
    let mut block = None;
    let mut duration = None;
    while src.pos() < end {
        let Some(child) = ebml::read_header(src)? else {
            return Err(ReadError::Eof);
        };
        let Some(csize) = child.size.filter(|_| child.end().is_some_and(|e| e <= end)) else {
            return malformed("bad BlockGroup child size");
        };
        match child.id {
            // A second Block in one group would overwrite the first one's payload: malformed.
            ebml::BLOCK if block.is_some() => return malformed("two Blocks in one BlockGroup"),
            ebml::BLOCK => block = Some(read_block(src, csize, mode, buf)?),
            ebml::BLOCK_DURATION if csize <= 8 => {
                duration = ebml::uint_from_bytes(&src.read_vec(csize)?);
            }
            _ => src.skip(csize)?,
        }
    }
    if src.pos() != end {
        return malformed("BlockGroup children overrun it");
    }
    Ok(block.map(|b| BlockHeader { duration, ..b }))
}
