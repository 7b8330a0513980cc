//! One streaming walk over a WebM file: where each top-level element is, the cluster
//! timecodes, the blocks, and where a cut-off tail starts.
//!
//! Used by the fixer's first pass (block payloads reduced to their first bytes) and by
//! [`crate::audio_blocks`] (whole payloads). Memory grows with the number of top-level
//! elements (about one per cluster), never with the file size.

use crate::MediaError;
use crate::ebml::{self, Header, ReadError, ReadResult, Source, malformed};

/// The largest Info / Tracks / EBML header body we hold in memory. Real ones are tiny; the
/// limit keeps a corrupt size from allocating gigabytes.
const MAX_HEADER_BODY: u64 = 16 << 20;
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

/// A block as seen by the walk.
pub struct BlockInfo {
    pub track: u64,
    /// Absolute time in TimecodeScale units (cluster timecode + relative timecode).
    pub time: i64,
    /// Bytes after the block header: whole or prefix, depending on [`PayloadMode`].
    pub payload: Vec<u8>,
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
    /// Copied verbatim (Tracks, Tags, Chapters, ...).
    Copy { id: u32, start: u64, end: u64 },
    /// Copied verbatim, except that a known-size cluster cut off by the end of the input gets
    /// its size field rewritten (same width) to cover the complete children kept.
    Cluster { start: u64, end: u64, timecode: u64, size_pos: u64, size_len: u8, new_size: Option<u64> },
}

#[derive(Debug)]
pub struct Scan {
    pub ebml_header_end: u64,
    pub items: Vec<Item>,
    pub timecode_scale: u64,
    /// Info's children without Duration, Void and CRC-32 (which would be wrong after the
    /// rebuild), byte for byte.
    pub info_children: Vec<u8>,
    pub tracks: Vec<TrackMeta>,
    /// Bytes of the input kept: everything before a cut-off tail.
    pub used: u64,
    pub blocks: usize,
}

fn not_webm(e: ReadError, what: &str) -> MediaError {
    match e {
        ReadError::Io(e) => MediaError::Io(e),
        ReadError::Eof => MediaError::NotWebM(format!("input ends inside the {what}")),
        ReadError::Malformed(m) => MediaError::NotWebM(m),
    }
}

/// Walks the whole input. `on_block` sees every kept block, in file order.
pub fn scan<S: Source>(
    src: &mut S,
    mode: PayloadMode,
    mut on_block: impl FnMut(BlockInfo),
) -> Result<Scan, MediaError> {
    let ebml_header_end = read_ebml_header(src)?;

    // Segment, possibly after Void padding.
    let segment = loop {
        match ebml::read_header(src).map_err(|e| not_webm(e, "Segment header"))? {
            None => return Err(MediaError::NotWebM("no Segment".into())),
            Some(h) if h.id == ebml::VOID => {
                let size = h.size.ok_or_else(|| bad("Void of unknown size"))?;
                src.skip(size).map_err(|e| not_webm(e, "Segment header"))?;
            }
            Some(h) if h.id == ebml::SEGMENT => break h,
            Some(h) => return Err(bad(format!("expected a Segment, found ID 0x{:X}", h.id))),
        }
    };
    let seg_end = segment.end();

    let mut scan = Scan {
        ebml_header_end,
        items: Vec::new(),
        timecode_scale: 1_000_000,
        info_children: Vec::new(),
        tracks: Vec::new(),
        used: 0,
        blocks: 0,
    };
    let mut have_info = false;
    let mut pending: Option<Header> = None;

    // `used` ends up as the offset where the kept part of the input ends.
    let used = loop {
        let h = match pending.take() {
            Some(h) => h,
            None => {
                if seg_end == Some(src.pos()) {
                    break src.pos();
                }
                let start = src.pos();
                match ebml::read_header(src) {
                    Ok(None) => break src.pos(),
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
                let c = scan_cluster(src, &h, seg_end, mode, &mut on_block)?;
                scan.blocks += c.blocks;
                match c.cut_at {
                    None => {
                        let Some(timecode) = c.timecode else {
                            return Err(bad("Cluster without Timecode"));
                        };
                        scan.items.push(cluster_item(&h, c.end, timecode, None));
                        pending = c.next;
                    }
                    // Cut off before its first complete block: drop the whole cluster.
                    Some(_) if c.blocks == 0 => break h.start,
                    Some(cut) => {
                        let timecode = c.timecode.expect("blocks imply a timecode");
                        let new_size = h.size.map(|_| cut - h.data_start);
                        scan.items.push(cluster_item(&h, cut, timecode, new_size));
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
                    ebml::INFO | ebml::TRACKS => src.read_vec(size).map(Some),
                    _ => src.skip(size).map(|_| None),
                };
                let body = match body {
                    Ok(b) => b,
                    Err(ReadError::Eof) => break h.start,
                    Err(e) => return Err(not_webm(e, "Segment")),
                };
                match id {
                    ebml::INFO => {
                        if have_info {
                            return Err(bad("more than one Info"));
                        }
                        have_info = true;
                        parse_info(&body.unwrap_or_default(), &mut scan)?;
                        scan.items.push(Item::Info);
                    }
                    ebml::TRACKS => {
                        parse_tracks(&body.unwrap_or_default(), &mut scan.tracks)?;
                        scan.items.push(Item::Copy { id, start: h.start, end: h.data_start + size });
                    }
                    // Rebuilt (SeekHead, Cues) or dropped (Void, CRC-32): their positions and
                    // checksums would be wrong once Info grows.
                    ebml::SEEK_HEAD | ebml::CUES | ebml::VOID | ebml::CRC32 => {}
                    _ => scan.items.push(Item::Copy { id, start: h.start, end: h.data_start + size }),
                }
            }
        }
    };

    // A known-size Segment followed by more data: not something this fixer understands.
    if seg_end == Some(used) && src.read_byte().map_err(|e| not_webm(e, "tail"))?.is_some() {
        return Err(bad("data after the Segment"));
    }
    if !have_info {
        return Err(bad("no complete Info element"));
    }
    if scan.tracks.is_empty() {
        return Err(bad("no complete Tracks element"));
    }
    scan.used = used;
    Ok(scan)
}

fn bad(msg: impl Into<String>) -> MediaError {
    MediaError::NotWebM(msg.into())
}

fn cluster_item(h: &Header, end: u64, timecode: u64, new_size: Option<u64>) -> Item {
    Item::Cluster { start: h.start, end, timecode, size_pos: h.size_pos, size_len: h.size_len, new_size }
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

fn parse_tracks(body: &[u8], tracks: &mut Vec<TrackMeta>) -> Result<(), MediaError> {
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
        tracks.push(t);
    }
    Ok(())
}

struct ClusterScan {
    timecode: Option<u64>,
    blocks: usize,
    /// End of the cluster when it was complete.
    end: u64,
    /// Set when the input ended inside the cluster: offset of the first cut-off child.
    cut_at: Option<u64>,
    /// For an unknown-size cluster: the header of the top-level element that ended it.
    next: Option<Header>,
}

fn scan_cluster<S: Source>(
    src: &mut S,
    h: &Header,
    seg_end: Option<u64>,
    mode: PayloadMode,
    on_block: &mut impl FnMut(BlockInfo),
) -> Result<ClusterScan, MediaError> {
    let mut c = ClusterScan { timecode: None, blocks: 0, end: 0, cut_at: None, next: None };
    // An unknown-size cluster ends at the Segment's end, the input's end, or the next
    // top-level ID.
    let limit = h.end().or(seg_end);
    loop {
        let child_start = src.pos();
        if limit == Some(child_start) {
            c.end = child_start;
            return Ok(c);
        }
        let child = match ebml::read_header(src) {
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
            && child.data_start + size > limit
        {
            return Err(bad(format!("cluster child 0x{:X} overruns its parent", child.id)));
        }
        let result = match child.id {
            ebml::TIMECODE if size <= 8 => src.read_vec(size).map(|v| {
                c.timecode = ebml::uint_from_bytes(&v);
                None
            }),
            ebml::SIMPLE_BLOCK => read_block(src, size, mode).map(Some),
            ebml::BLOCK_GROUP => read_block_group(src, size, mode),
            _ => src.skip(size).map(|_| None),
        };
        match result {
            Ok(None) => {}
            Ok(Some(block)) => {
                let Some(tc) = c.timecode else {
                    return Err(bad("block before the cluster Timecode"));
                };
                let (track, rel, mut info) = block;
                info.track = track;
                info.time = tc as i64 + rel as i64;
                c.blocks += 1;
                on_block(info);
            }
            Err(ReadError::Eof) => {
                c.cut_at = Some(child_start);
                return Ok(c);
            }
            Err(e) => return Err(not_webm(e, "Cluster")),
        }
    }
}

type Block = (u64, i16, BlockInfo);

/// Reads a Block / SimpleBlock body of `size` bytes: (track, relative timecode, info).
fn read_block<S: Source>(src: &mut S, size: u64, mode: PayloadMode) -> ReadResult<Block> {
    let take = match mode {
        PayloadMode::Full => size,
        PayloadMode::Prefix => size.min(BLOCK_PREFIX),
    };
    let mut bytes = src.read_vec(take)?;
    src.skip(size - take)?;
    let Some((track, n)) = ebml::vint_from_slice(&bytes) else {
        return malformed("bad block track number");
    };
    if bytes.len() < n + 3 {
        return malformed("block shorter than its header");
    }
    let rel = i16::from_be_bytes([bytes[n], bytes[n + 1]]);
    let flags = bytes[n + 2];
    bytes.drain(..n + 3);
    Ok((track, rel, BlockInfo { track, time: 0, payload: bytes, laced: flags & 0x06 != 0, duration: None }))
}

fn read_block_group<S: Source>(src: &mut S, size: u64, mode: PayloadMode) -> ReadResult<Option<Block>> {
    let end = src.pos() + size;
    let mut block = None;
    let mut duration = None;
    while src.pos() < end {
        let Some(child) = ebml::read_header(src)? else {
            return Err(ReadError::Eof);
        };
        let Some(csize) = child.size.filter(|&s| child.data_start + s <= end) else {
            return malformed("bad BlockGroup child size");
        };
        match child.id {
            ebml::BLOCK => block = Some(read_block(src, csize, mode)?),
            ebml::BLOCK_DURATION if csize <= 8 => {
                duration = ebml::uint_from_bytes(&src.read_vec(csize)?);
            }
            _ => src.skip(csize)?,
        }
    }
    if src.pos() != end {
        return malformed("BlockGroup children overrun it");
    }
    Ok(block.map(|(t, rel, mut info)| {
        info.duration = duration;
        (t, rel, info)
    }))
}
