//! A small EBML reader and writer: variable-length IDs and sizes, element headers.
//!
//! Only what the WebM fixer needs. Reading goes through [`Source`], which keeps the
//! absolute byte position (the fixer records offsets) and can skip forward.

use std::io::{self, Write};

#[cfg(test)]
use crate::source::StreamSource;
pub use crate::source::{ReadError, ReadResult, Source, malformed};

// Element IDs, with their marker bits, as written in the file.
pub const EBML: u32 = 0x1A45_DFA3;
pub const DOC_TYPE: u32 = 0x4282;
pub const EBML_MAX_ID_LENGTH: u32 = 0x42F2;
pub const EBML_MAX_SIZE_LENGTH: u32 = 0x42F3;
pub const SEGMENT: u32 = 0x1853_8067;
pub const SEEK_HEAD: u32 = 0x114D_9B74;
pub const SEEK: u32 = 0x4DBB;
pub const SEEK_ID: u32 = 0x53AB;
pub const SEEK_POSITION: u32 = 0x53AC;
pub const INFO: u32 = 0x1549_A966;
pub const TIMECODE_SCALE: u32 = 0x2AD7B1;
pub const DURATION: u32 = 0x4489;
pub const TRACKS: u32 = 0x1654_AE6B;
pub const TRACK_ENTRY: u32 = 0xAE;
pub const TRACK_NUMBER: u32 = 0xD7;
pub const TRACK_TYPE: u32 = 0x83;
pub const CODEC_ID: u32 = 0x86;
pub const CLUSTER: u32 = 0x1F43_B675;
pub const TIMECODE: u32 = 0xE7;
pub const SIMPLE_BLOCK: u32 = 0xA3;
pub const BLOCK_GROUP: u32 = 0xA0;
pub const BLOCK: u32 = 0xA1;
pub const BLOCK_DURATION: u32 = 0x9B;
pub const CUES: u32 = 0x1C53_BB6B;
pub const CUE_POINT: u32 = 0xBB;
pub const CUE_TIME: u32 = 0xB3;
pub const CUE_TRACK_POSITIONS: u32 = 0xB7;
pub const CUE_TRACK: u32 = 0xF7;
pub const CUE_CLUSTER_POSITION: u32 = 0xF1;
pub const CHAPTERS: u32 = 0x1043_A770;
pub const TAGS: u32 = 0x1254_C367;
pub const ATTACHMENTS: u32 = 0x1941_A469;
pub const VOID: u32 = 0xEC;
pub const CRC32: u32 = 0xBF;

/// IDs that may only appear as children of the Segment. An unknown-size Cluster ends where
/// one of these (or a new EBML header / Segment) starts.
pub fn is_top_level(id: u32) -> bool {
    matches!(id, SEEK_HEAD | INFO | TRACKS | CLUSTER | CUES | CHAPTERS | TAGS | ATTACHMENTS | EBML | SEGMENT)
}

/// An element header as found in the input.
#[derive(Debug, Clone, Copy)]
pub struct Header {
    pub id: u32,
    /// Offset of the first ID byte.
    pub start: u64,
    /// Offset of the first data byte.
    pub data_start: u64,
    /// `None` for the "unknown size" value (all value bits set).
    pub size: Option<u64>,
}

impl Header {
    /// Offset just past the data, if the size is known.
    pub fn end(&self) -> Option<u64> {
        self.size.and_then(|s| self.data_start.checked_add(s))
    }
}

/// Reads an element header. `Ok(None)` when the input ends cleanly before the first ID byte;
/// `Err(Eof)` when it ends inside the header.
pub fn read_header<S: Source>(src: &mut S) -> ReadResult<Option<Header>> {
    let start = src.pos();
    let Some(first) = src.read_byte()? else {
        return Ok(None);
    };
    // IDs keep their marker bits; at most 4 bytes long (EBMLMaxIDLength 4).
    let id_len = first.leading_zeros() as usize + 1;
    if first == 0 || id_len > 4 {
        return malformed(format!("invalid element ID byte 0x{first:02X} at {start}"));
    }
    let mut id = first as u32;
    for _ in 1..id_len {
        let mut b = [0u8; 1];
        src.read_exact(&mut b)?;
        id = (id << 8) | b[0] as u32;
    }
    let (size, _) = read_vint(src)?;
    Ok(Some(Header { id, start, data_start: src.pos(), size }))
}

/// Reads a variable-length size: (value, width). `None` value means "unknown size".
pub fn read_vint<S: Source>(src: &mut S) -> ReadResult<(Option<u64>, u8)> {
    let pos = src.pos();
    let mut b = [0u8; 1];
    src.read_exact(&mut b)?;
    let first = b[0];
    if first == 0 {
        return malformed(format!("invalid size byte 0x00 at {pos}"));
    }
    let len = first.leading_zeros() as u8 + 1;
    // The marker bit and the zeros before it are not part of the value (u16: len may be 8).
    let mask = (0xFFu16 >> len) as u8;
    let mut value = (first & mask) as u64;
    let mut all_ones = first & mask == mask;
    for _ in 1..len {
        src.read_exact(&mut b)?;
        value = (value << 8) | b[0] as u64;
        all_ones &= b[0] == 0xFF;
    }
    Ok((if all_ones { None } else { Some(value) }, len))
}

/// Decodes a vint from a byte slice (for block headers): (value, width).
pub fn vint_from_slice(buf: &[u8]) -> Option<(u64, usize)> {
    let first = *buf.first()?;
    if first == 0 {
        return None;
    }
    let len = first.leading_zeros() as usize + 1;
    if buf.len() < len {
        return None;
    }
    let mut value = (first & (0xFFu16 >> len) as u8) as u64;
    for &b in &buf[1..len] {
        value = (value << 8) | b as u64;
    }
    Some((value, len))
}

/// Big-endian unsigned integer element body (0 to 8 bytes).
pub fn uint_from_bytes(b: &[u8]) -> Option<u64> {
    if b.len() > 8 {
        return None;
    }
    Some(b.iter().fold(0u64, |acc, &x| (acc << 8) | x as u64))
}

/// Children of an in-memory master element: (id, whole element bytes, data bytes). The whole
/// bytes let callers copy a child verbatim.
pub type Children<'a> = Vec<(u32, &'a [u8], &'a [u8])>;

/// Walks the children of an in-memory master element body.
pub fn children(body: &[u8]) -> ReadResult<Children<'_>> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos < body.len() {
        let start = pos;
        let first = body[pos];
        let id_len = first.leading_zeros() as usize + 1;
        if first == 0 || id_len > 4 || pos + id_len > body.len() {
            return malformed("invalid child element ID");
        }
        let id = body[pos..pos + id_len].iter().fold(0u32, |acc, &x| (acc << 8) | x as u32);
        pos += id_len;
        let Some((size, size_len)) = vint_from_slice(&body[pos..]) else {
            return malformed("invalid child element size");
        };
        pos += size_len;
        let end = usize::try_from(size).ok().and_then(|size| pos.checked_add(size)).filter(|&e| e <= body.len());
        let Some(end) = end else {
            return malformed("child element larger than its parent");
        };
        out.push((id, &body[start..end], &body[pos..end]));
        pos = end;
    }
    Ok(out)
}

// ---- writing ----

/// Writes an ID (IDs are stored with their marker bits, so just the significant bytes).
pub fn write_id<W: Write>(out: &mut W, id: u32) -> io::Result<()> {
    let bytes = id.to_be_bytes();
    let skip = (id.leading_zeros() / 8) as usize;
    out.write_all(&bytes[skip..])
}

/// The largest value a size vint of `width` bytes (1..=8) can hold as a known size (all ones
/// means "unknown").
pub fn max_size(width: u8) -> u64 {
    (1u64 << (7 * u32::from(width.clamp(1, 8)))) - 2
}

/// Smallest width that can hold `value` as a known size.
pub fn size_width(value: u64) -> u8 {
    (1..=8u8).find(|&w| value <= max_size(w)).unwrap_or(8)
}

/// Writes `value` as a size vint of exactly `width` bytes (1..=8); fails if it does not fit.
pub fn write_size<W: Write>(out: &mut W, value: u64, width: u8) -> io::Result<()> {
    if !(1..=8).contains(&width) || value > max_size(width) {
        return Err(io::Error::other(format!("size {value} does not fit a {width}-byte vint")));
    }
    let be = value.to_be_bytes();
    let w = width as usize;
    let mut buf = [0u8; 8];
    buf[..w].copy_from_slice(&be[8 - w..]);
    buf[0] |= 0x80 >> (w - 1);
    out.write_all(&buf[..w])
}

/// An element whose data is an 8-byte big-endian unsigned integer (fixed width on purpose:
/// the length of Cues and SeekHead must be known before the positions are).
pub fn write_u64_element<W: Write>(out: &mut W, id: u32, value: u64) -> io::Result<()> {
    write_id(out, id)?;
    write_size(out, 8, 1)?;
    out.write_all(&value.to_be_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vint_round_trip() {
        for (v, w) in [(0u64, 1u8), (126, 1), (127, 2), (300, 2), (1 << 40, 6), (1 << 50, 8)] {
            assert_eq!(size_width(v), w);
            let mut enc = Vec::new();
            write_size(&mut enc, v, w).unwrap();
            assert_eq!(enc.len(), w as usize);
            let mut src = StreamSource::new(&enc[..]);
            assert_eq!(read_vint(&mut src).unwrap(), (Some(v), w));
        }
        let mut src = StreamSource::new(&[0x01u8, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF][..]);
        assert_eq!(read_vint(&mut src).unwrap(), (None, 8));
    }

    #[test]
    fn header_of_cluster() {
        let bytes = [0x1F, 0x43, 0xB6, 0x75, 0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];
        let mut src = StreamSource::new(&bytes[..]);
        let h = read_header(&mut src).unwrap().unwrap();
        assert_eq!(h.id, CLUSTER);
        assert_eq!(h.data_start, 12);
        assert_eq!(h.size, None);
        let mut out = Vec::new();
        write_id(&mut out, SIMPLE_BLOCK).unwrap();
        write_id(&mut out, CLUSTER).unwrap();
        assert_eq!(out, [0xA3, 0x1F, 0x43, 0xB6, 0x75]);
    }
}
