//! Byte sources for the container walkers: they know the absolute position (the fixers record
//! offsets) and skip forward, by seeking when the input allows it and by reading otherwise.
//! Every position is checked against the input's length, so a corrupt size is an `Eof`, never
//! a seek past the end or an allocation of its size.

use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};

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
        let mut v = Vec::new();
        self.read_append(n, &mut v)?;
        Ok(v)
    }

    /// Appends `n` bytes to `v`. Grows with the data actually read, so a corrupt huge size
    /// cannot allocate up front.
    fn read_append(&mut self, n: u64, v: &mut Vec<u8>) -> ReadResult<()> {
        let mut buf = [0u8; 8192];
        let mut left = n;
        while left > 0 {
            let k = left.min(buf.len() as u64) as usize;
            self.read_exact(&mut buf[..k])?;
            v.extend_from_slice(&buf[..k]);
            left -= k as u64;
        }
        Ok(())
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
            let delta = i64::try_from(i128::from(pos) - i128::from(self.pos)).map_err(io::Error::other)?;
            self.inner.seek_relative(delta)?;
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
        if let Some(b) = take_buffered_byte(&mut self.inner) {
            self.pos += 1;
            return Ok(Some(b));
        }
        let mut b = [0u8; 1];
        self.read_exact(&mut b)?;
        Ok(Some(b[0]))
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> ReadResult<()> {
        if self.pos.checked_add(buf.len() as u64).is_none_or(|end| end > self.len) {
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
        if !skip_buffered(&mut self.inner, n) {
            self.seek_to(self.pos + n)?;
            return Ok(());
        }
        self.pos += n;
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
        if let Some(b) = take_buffered_byte(&mut self.inner) {
            self.pos += 1;
            return Ok(Some(b));
        }
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
        if skip_buffered(&mut self.inner, n) {
            self.pos += n;
            return Ok(());
        }
        let skipped = io::copy(&mut (&mut self.inner).take(n), &mut io::sink())?;
        self.pos += skipped;
        if skipped != n {
            return Err(ReadError::Eof);
        }
        Ok(())
    }
}

// Fast paths for the walkers' commonest calls (a header byte, a small skip): served from the
// buffer without a read or seek call.

fn take_buffered_byte<R: Read>(r: &mut BufReader<R>) -> Option<u8> {
    let b = *r.buffer().first()?;
    r.consume(1);
    Some(b)
}

/// Skips `n` bytes if they are all buffered; `false` (nothing done) otherwise.
fn skip_buffered<R: Read>(r: &mut BufReader<R>, n: u64) -> bool {
    match usize::try_from(n) {
        Ok(n) if n <= r.buffer().len() => {
            r.consume(n);
            true
        }
        _ => false,
    }
}
