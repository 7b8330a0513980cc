//! The spool: a live recording's bytes on local disk, written chunk by chunk
//! before each chunk is acknowledged.
//!
//! Two files per recording: `<id>.data` holds the audio bytes in order, and
//! `<id>.idx` holds one little-endian u64 per stored chunk (its length). The
//! data is written first and the index entry second, so after a crash the
//! index says exactly which chunks are complete: recovery cuts the data file
//! to the sum of the indexed lengths and the next expected seq is the number
//! of entries. Memory per recording is two file handles and a few counters,
//! whatever the recording's length.
//!
//! An open spool holds an exclusive lock (`flock`) on its index file, so
//! that two instances sharing the spool folder never write one take at once:
//! the holder releases it (closes the spool) when no socket of its uses the
//! take any more, and another instance can then take the take over.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use uuid::Uuid;

/// Bytes of one index entry (a chunk's length).
pub const INDEX_ENTRY_BYTES: u64 = 8;

#[derive(Debug, Clone)]
pub struct SpoolPaths {
    pub data: PathBuf,
    pub index: PathBuf,
    /// The container-fixed file produced at finalize, uploaded from here.
    pub fixed: PathBuf,
    /// Input level peaks sent with the chunks, for the waveform.
    pub peaks: PathBuf,
    /// The client's pause timeline, written at stop (see [`super::finalize::Timeline`]).
    pub timeline: PathBuf,
}

impl SpoolPaths {
    pub fn new(dir: &Path, id: Uuid) -> SpoolPaths {
        SpoolPaths {
            data: dir.join(format!("{id}.data")),
            index: dir.join(format!("{id}.idx")),
            fixed: dir.join(format!("{id}.fixed")),
            peaks: dir.join(format!("{id}.peaks")),
            timeline: dir.join(format!("{id}.timeline")),
        }
    }

    pub fn exists(&self) -> bool {
        self.data.exists() && self.index.exists()
    }

    /// Removes every file of the recording (after a confirmed upload).
    pub fn remove(&self) {
        for p in [&self.data, &self.index, &self.fixed, &self.peaks, &self.timeline] {
            if let Err(e) = std::fs::remove_file(p)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(path = %p.display(), error = %e, "cannot remove spool file");
            }
        }
    }
}

/// An open spool, appended to by one task at a time.
#[derive(Debug)]
pub struct Spool {
    pub paths: SpoolPaths,
    data: Arc<File>,
    index: Arc<File>,
    /// Opened on the first chunk that carries peaks: one file descriptor
    /// less per take for clients that send none.
    peaks: Option<File>,
    /// Chunks stored so far (the next expected seq).
    pub chunks: u64,
    pub bytes: u64,
    /// Bytes of waveform peaks written so far.
    peak_bytes: u64,
    /// Writes go through the blocking thread pool (a network file system,
    /// where a write can stall) instead of inline on the async worker.
    blocking_io: bool,
}

/// Why a spool could not be opened.
#[derive(Debug)]
pub enum OpenError {
    /// Another process (instance) holds the take's spool right now.
    Locked,
    Io(std::io::Error),
}

impl From<std::io::Error> for OpenError {
    fn from(e: std::io::Error) -> Self {
        OpenError::Io(e)
    }
}

/// Takes the exclusive lock on an open spool file, without waiting.
fn lock(file: &File) -> Result<(), OpenError> {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid open file descriptor; flock has no other preconditions.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    if e.kind() == std::io::ErrorKind::WouldBlock { Err(OpenError::Locked) } else { Err(OpenError::Io(e)) }
}

impl Spool {
    /// Creates the spool of a new recording.
    pub fn create(dir: &Path, id: Uuid) -> std::io::Result<Spool> {
        std::fs::create_dir_all(dir)?;
        let paths = SpoolPaths::new(dir, id);
        let open = |p: &Path| OpenOptions::new().create_new(true).append(true).open(p);
        let data = open(&paths.data)?;
        let index = open(&paths.index)?;
        match lock(&index) {
            Ok(()) => {}
            Err(OpenError::Locked) => return Err(std::io::Error::other("a new spool is locked")),
            Err(OpenError::Io(e)) => return Err(e),
        }
        // The files' names must survive a power cut like their contents.
        sync_dir(dir)?;
        Ok(Spool {
            paths,
            data: Arc::new(data),
            index: Arc::new(index),
            peaks: None,
            chunks: 0,
            bytes: 0,
            peak_bytes: 0,
            blocking_io: false,
        })
    }

    /// Sends writes through the blocking thread pool from now on.
    pub fn with_blocking_io(mut self, blocking: bool) -> Spool {
        self.blocking_io = blocking;
        self
    }

    /// Reopens the spool of a recording after a disconnect, a restart or a
    /// crash, dropping any chunk whose write did not complete. Fails with
    /// [`OpenError::Locked`] while another process holds it open.
    pub fn recover(dir: &Path, id: Uuid) -> Result<Spool, OpenError> {
        let paths = SpoolPaths::new(dir, id);
        let mut index = OpenOptions::new().read(true).append(true).open(&paths.index)?;
        // Locked before anything is read or cut: the holder may be writing.
        lock(&index)?;
        let mut raw = Vec::new();
        index.read_to_end(&mut raw)?;
        let data_len = std::fs::metadata(&paths.data)?.len();
        let (mut chunks, mut bytes) = (0u64, 0u64);
        for entry in raw.chunks_exact(INDEX_ENTRY_BYTES as usize) {
            let len = u64::from_le_bytes(entry.try_into().expect("8 bytes"));
            if bytes.saturating_add(len) > data_len {
                break; // the index got ahead of the data: that chunk was never acknowledged
            }
            chunks += 1;
            bytes += len;
        }
        let data = OpenOptions::new().append(true).open(&paths.data)?;
        data.set_len(bytes)?;
        index.set_len(chunks * INDEX_ENTRY_BYTES)?;
        let peak_bytes = std::fs::metadata(&paths.peaks).map_or(0, |m| m.len());
        Ok(Spool {
            paths,
            data: Arc::new(data),
            index: Arc::new(index),
            peaks: None,
            chunks,
            bytes,
            peak_bytes,
            blocking_io: false,
        })
    }

    /// Writes one chunk (data, then its index entry). When this returns the
    /// bytes are in the operating system's hands: they survive the server
    /// process being killed, not a power cut (see `sync`).
    /// `peaks` (the chunk's input levels, for the waveform) are cosmetic:
    /// written after the chunk, never needed for recovery.
    ///
    /// On a local disk the writes are made inline on the async worker: a
    /// `write(2)` of a chunk into the page cache takes microseconds, while a
    /// trip through the blocking thread pool per chunk cost more than the
    /// write itself (measured by the load program: thread hand-offs dominated
    /// the server's CPU at 1,000 recorders). On a network file system (EFS),
    /// where one write can stall, they go through the blocking pool.
    pub async fn append(&mut self, chunk: Bytes, peaks: Option<Vec<u8>>) -> std::io::Result<()> {
        let len = chunk.len() as u64;
        let (data, index) = (self.data.clone(), self.index.clone());
        let write = move || (&*data).write_all(&chunk).and_then(|()| (&*index).write_all(&len.to_le_bytes()));
        let written = if self.blocking_io {
            tokio::task::spawn_blocking(write).await.map_err(std::io::Error::other).and_then(|r| r)
        } else {
            write()
        };
        if let Err(e) = written {
            // A disk full or failing half-way: cut both files back to the last
            // acknowledged chunk, so a retry of this seq lands cleanly.
            let _ = self.data.set_len(self.bytes);
            let _ = self.index.set_len(self.chunks * INDEX_ENTRY_BYTES);
            return Err(e);
        }
        self.chunks += 1;
        self.bytes += len;
        if let Some(peaks) = peaks.filter(|p| !p.is_empty()) {
            match self.write_peaks(&peaks) {
                Ok(()) => self.peak_bytes += peaks.len() as u64,
                Err(e) => tracing::warn!(path = %self.paths.peaks.display(), error = %e, "waveform peaks not kept"),
            }
        }
        Ok(())
    }

    /// What the take occupies on disk: audio, index and peaks.
    pub fn disk_bytes(&self) -> u64 {
        self.bytes + self.chunks * INDEX_ENTRY_BYTES + self.peak_bytes
    }

    /// Peaks are cosmetic: a failure here never fails the chunk.
    fn write_peaks(&mut self, peaks: &[u8]) -> std::io::Result<()> {
        if self.peaks.is_none() {
            self.peaks = Some(OpenOptions::new().create(true).append(true).open(&self.paths.peaks)?);
        }
        match &mut self.peaks {
            Some(file) => file.write_all(peaks),
            None => Ok(()),
        }
    }

    /// Flushes the spool to the disk itself.
    pub async fn sync(&self) -> std::io::Result<()> {
        let (data, index) = (self.data.clone(), self.index.clone());
        tokio::task::spawn_blocking(move || {
            data.sync_data()?;
            index.sync_data()
        })
        .await
        .map_err(std::io::Error::other)?
    }
}

/// Ids of the takes with spool files in `dir` last modified more than
/// `min_age` ago.
pub fn old_spool_ids(dir: &Path, min_age: std::time::Duration) -> Vec<Uuid> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut ids: Vec<Uuid> = entries
        .flatten()
        .filter(|e| e.metadata().and_then(|m| m.modified()).is_ok_and(|t| t.elapsed().is_ok_and(|age| age >= min_age)))
        .filter_map(|e| {
            let name = e.file_name();
            let (stem, ext) = name.to_str()?.rsplit_once('.')?;
            matches!(ext, "data" | "idx" | "fixed" | "peaks" | "timeline").then(|| Uuid::try_parse(stem).ok()).flatten()
        })
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// Flushes a folder's entries (new, renamed or linked files) to the disk.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn recover_keeps_complete_chunks_only() {
        let dir = tempfile::tempdir().unwrap();
        let id = Uuid::new_v4();
        let mut spool = Spool::create(dir.path(), id).unwrap();
        spool.append(Bytes::from_static(b"hello "), Some(vec![1, 2])).await.unwrap();
        spool.append(Bytes::from_static(b"world"), None).await.unwrap();
        assert_eq!((spool.chunks, spool.bytes), (2, 11));
        drop(spool);

        // A crash in the middle of a third chunk: half its data, no index entry...
        OpenOptions::new().append(true).open(dir.path().join(format!("{id}.data"))).unwrap().write_all(b"!!").unwrap();
        // ...and a torn index entry.
        OpenOptions::new().append(true).open(dir.path().join(format!("{id}.idx"))).unwrap().write_all(&[3, 0]).unwrap();

        let mut spool = Spool::recover(dir.path(), id).unwrap();
        assert_eq!((spool.chunks, spool.bytes), (2, 11));
        spool.append(Bytes::from_static(b"!"), None).await.unwrap();
        assert_eq!(std::fs::read(&spool.paths.data).unwrap(), b"hello world!");
        assert_eq!(std::fs::metadata(&spool.paths.index).unwrap().len(), 24);
        assert_eq!(std::fs::read(&spool.paths.peaks).unwrap(), [1, 2]);
    }

    #[tokio::test]
    async fn index_ahead_of_data_drops_the_chunk() {
        let dir = tempfile::tempdir().unwrap();
        let id = Uuid::new_v4();
        let mut spool = Spool::create(dir.path(), id).unwrap();
        spool.append(Bytes::from_static(b"abc"), None).await.unwrap();
        drop(spool);
        OpenOptions::new()
            .append(true)
            .open(dir.path().join(format!("{id}.idx")))
            .unwrap()
            .write_all(&9u64.to_le_bytes())
            .unwrap();
        let spool = Spool::recover(dir.path(), id).unwrap();
        assert_eq!((spool.chunks, spool.bytes), (1, 3));
    }

    #[tokio::test]
    async fn one_holder_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let id = Uuid::new_v4();
        let mut first = Spool::create(dir.path(), id).unwrap();
        first.append(Bytes::from_static(b"abc"), None).await.unwrap();
        assert!(matches!(Spool::recover(dir.path(), id), Err(OpenError::Locked)), "held by its creator");
        drop(first);
        let second = Spool::recover(dir.path(), id).unwrap();
        assert_eq!((second.chunks, second.bytes), (1, 3));
        assert!(matches!(Spool::recover(dir.path(), id), Err(OpenError::Locked)), "held by the second holder");
    }

    #[tokio::test]
    async fn blocking_writes_store_the_same_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let id = Uuid::new_v4();
        let mut spool = Spool::create(dir.path(), id).unwrap().with_blocking_io(true);
        spool.append(Bytes::from_static(b"on a "), None).await.unwrap();
        spool.append(Bytes::from_static(b"network disk"), None).await.unwrap();
        assert_eq!(std::fs::read(&spool.paths.data).unwrap(), b"on a network disk");
        assert_eq!((spool.chunks, spool.bytes), (2, 17));
    }

    #[test]
    fn create_refuses_an_existing_spool() {
        let dir = tempfile::tempdir().unwrap();
        let id = Uuid::new_v4();
        let _first = Spool::create(dir.path(), id).unwrap();
        assert!(Spool::create(dir.path(), id).is_err());
    }
}
