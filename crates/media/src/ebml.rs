//! A small EBML reader and writer: variable-length IDs and sizes, element headers.
//!
//! Only what the WebM fixer needs. Reading goes through [`Source`], which keeps the
//! absolute byte position (the fixer records offsets) and can skip forward, by seeking
//! when the input allows it and by reading otherwise.

use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};

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

/// Why reading stopped. `Eof` is kept apart from I/O errors: at the end of the input it
/// means "cut-off element", which the fixer drops instead of failing.
#[derive(Debug)]
pub enum ReadError {
    Eof,
    Malformed(String),
    Io(io::Error),
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::UnexpectedEof { ReadError::Eof } else { ReadError::Io(e) }
    }
}

pub type ReadResult<T> = Result<T, ReadError>;

pub fn malformed<T>(msg: impl Into<String>) -> ReadResult<T> {
    Err(ReadError::Malformed(msg.into()))
}

/// A byte source that knows its position and can skip forward.
pub trait Source {
    fn pos(&self) -> u64;
    /// Reads one byte; `Ok(None)` at a clean end of input.
    fn read_byte(&mut self) -> ReadResult<Option<u8>>;
    /// Fills `buf` completely or fails with `ReadError::Eof`.
    fn read_exact(&mut self, buf: &mut [u8]) -> ReadResult<()>;
    /// Skips `n` bytes, failing with `ReadError::Eof` if fewer remain.
    fn skip(&mut self, n: u64) -> ReadResult<()>;

    fn read_vec(&mut self, n: u64) -> ReadResult<Vec<u8>> {
        // Grow with the data actually read, so a corrupt huge size cannot allocate up front.
        let mut v = Vec::with_capacity(n.min(1 << 16) as usize);
        let mut buf = [0u8; 8192];
        let mut left = n;
        while left > 0 {
            let k = left.min(buf.len() as u64) as usize;
            self.read_exact(&mut buf[..k])?;
            v.extend_from_slice(&buf[..k]);
            left -= k as u64;
        }
        Ok(v)
    }
}

/// Seekable input: skips by seeking, and knows the total length so a skip past the end is
/// reported as `Eof` (a seek alone would not notice).
pub struct SeekSource<R: Read + Seek> {
    inner: BufReader<R>,
    pos: u64,
    len: u64,
}

impl<R: Read + Seek> SeekSource<R> {
    pub fn new(mut inner: R) -> io::Result<Self> {
        let len = inner.seek(SeekFrom::End(0))?;
        inner.seek(SeekFrom::Start(0))?;
        Ok(SeekSource { inner: BufReader::with_capacity(64 * 1024, inner), pos: 0, len })
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn seek_to(&mut self, pos: u64) -> io::Result<()> {
        if pos != self.pos {
            // seek_relative keeps the buffer when the target is inside it.
            self.inner.seek_relative(pos as i64 - self.pos as i64)?;
            self.pos = pos;
        }
        Ok(())
    }

    /// Copies `n` bytes from the current position to `out`.
    pub fn copy_to<W: Write>(&mut self, n: u64, out: &mut W) -> io::Result<()> {
        let copied = io::copy(&mut (&mut self.inner).take(n), out)?;
        self.pos += copied;
        if copied != n {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "input shrank between the two passes"));
        }
        Ok(())
    }
}

impl<R: Read + Seek> Source for SeekSource<R> {
    fn pos(&self) -> u64 {
        self.pos
    }

    fn read_byte(&mut self) -> ReadResult<Option<u8>> {
        if self.pos >= self.len {
            return Ok(None);
        }
        let mut b = [0u8; 1];
        self.read_exact(&mut b)?;
        Ok(Some(b[0]))
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> ReadResult<()> {
        if self.pos + buf.len() as u64 > self.len {
            return Err(ReadError::Eof);
        }
        self.inner.read_exact(buf)?;
        self.pos += buf.len() as u64;
        Ok(())
    }

    fn skip(&mut self, n: u64) -> ReadResult<()> {
        if self.pos.checked_add(n).is_none_or(|end| end > self.len) {
            return Err(ReadError::Eof);
        }
        self.seek_to(self.pos + n)?;
        Ok(())
    }
}

/// Plain `Read` input: skips by reading and discarding.
pub struct StreamSource<R: Read> {
    inner: BufReader<R>,
    pos: u64,
}

impl<R: Read> StreamSource<R> {
    pub fn new(inner: R) -> Self {
        StreamSource { inner: BufReader::with_capacity(64 * 1024, inner), pos: 0 }
    }
}

impl<R: Read> Source for StreamSource<R> {
    fn pos(&self) -> u64 {
        self.pos
    }

    fn read_byte(&mut self) -> ReadResult<Option<u8>> {
        let mut b = [0u8; 1];
        loop {
            match self.inner.read(&mut b) {
                Ok(0) => return Ok(None),
                Ok(_) => {
                    self.pos += 1;
                    return Ok(Some(b[0]));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> ReadResult<()> {
        self.inner.read_exact(buf)?;
        self.pos += buf.len() as u64;
        Ok(())
    }

    fn skip(&mut self, n: u64) -> ReadResult<()> {
        let skipped = io::copy(&mut (&mut self.inner).take(n), &mut io::sink())?;
        self.pos += skipped;
        if skipped != n {
            return Err(ReadError::Eof);
        }
        Ok(())
    }
}

/// An element header as found in the input.
#[derive(Debug, Clone, Copy)]
pub struct Header {
    pub id: u32,
    /// Offset of the first ID byte.
    pub start: u64,
    /// Offset of the first size byte.
    pub size_pos: u64,
    /// Width of the size field in bytes.
    pub size_len: u8,
    /// Offset of the first data byte.
    pub data_start: u64,
    /// `None` for the "unknown size" value (all value bits set).
    pub size: Option<u64>,
}

impl Header {
    /// Offset just past the data, if the size is known.
    pub fn end(&self) -> Option<u64> {
        self.size.map(|s| self.data_start + s)
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
    let size_pos = src.pos();
    let (size, size_len) = read_vint(src)?;
    Ok(Some(Header { id, start, size_pos, size_len, data_start: src.pos(), size }))
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
        let end = pos.checked_add(size as usize).filter(|&e| e <= body.len() && size < (1 << 56) - 1);
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

/// Encodes `value` as a size vint of exactly `width` bytes (1..=8).
pub fn encode_size(value: u64, width: u8) -> [u8; 8] {
    debug_assert!((1..=8).contains(&width));
    debug_assert!(value < (1u64 << (7 * width as u32)) - 1);
    let mut buf = [0u8; 8];
    let be = value.to_be_bytes();
    let w = width as usize;
    buf[..w].copy_from_slice(&be[8 - w..]);
    buf[0] |= 0x80 >> (w - 1);
    buf
}

/// Smallest width that can hold `value` as a known size.
pub fn size_width(value: u64) -> u8 {
    (1..=8u8).find(|&w| value < (1u64 << (7 * w as u32)) - 1).unwrap_or(8)
}

pub fn write_size<W: Write>(out: &mut W, value: u64, width: u8) -> io::Result<()> {
    out.write_all(&encode_size(value, width)[..width as usize])
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
            let enc = encode_size(v, w);
            let mut src = StreamSource::new(&enc[..w as usize]);
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
