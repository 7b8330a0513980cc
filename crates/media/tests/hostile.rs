//! The attacker's inputs, generated here: files built to make a fixer slow (quadratic
//! lookups) or big (an item kept per tiny element). Each is fixed file to file as the server
//! does it, with the time and the peak heap (a counting global allocator) printed and checked
//! against generous bounds.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::fs::File;
use std::io::{BufWriter, Cursor, Write};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use audiobook_media::{FixOptions, MediaError, audio_blocks, fix_recording, limits};

/// Counts the heap in use and its peak since the last reset.
struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// One measurement at a time, so the peak belongs to the case measured.
static SERIAL: Mutex<()> = Mutex::new(());

const TIME_BOUND: Duration = Duration::from_secs(30);
const HEAP_BOUND: usize = 100 << 20;

/// Runs `f`, prints and checks its time and the heap it added at its peak.
fn measured<T>(what: &str, input_bytes: u64, f: impl FnOnce() -> T) -> T {
    let base = CURRENT.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let t = Instant::now();
    let out = f();
    let elapsed = t.elapsed();
    let peak = PEAK.load(Ordering::Relaxed).saturating_sub(base);
    println!(
        "{what}: {:.1} MB in {elapsed:.2?}, peak heap {:.1} MB (bounds: {TIME_BOUND:?}, {} MB)",
        input_bytes as f64 / 1e6,
        peak as f64 / 1e6,
        HEAP_BOUND >> 20
    );
    assert!(elapsed < TIME_BOUND, "{what}: {elapsed:?}");
    assert!(peak < HEAP_BOUND, "{what}: peak heap {peak} bytes");
    out
}

/// Writes a file made of `head`, `count` copies of what `unit(i)` writes, and `tail`.
fn build(path: &Path, head: &[u8], count: usize, mut unit: impl FnMut(usize, &mut Vec<u8>), tail: &[u8]) -> u64 {
    let mut w = BufWriter::with_capacity(1 << 16, File::create(path).unwrap());
    w.write_all(head).unwrap();
    let mut buf = Vec::with_capacity(64);
    for i in 0..count {
        buf.clear();
        unit(i, &mut buf);
        w.write_all(&buf).unwrap();
    }
    w.write_all(tail).unwrap();
    w.into_inner().unwrap().sync_all().unwrap();
    std::fs::metadata(path).unwrap().len()
}

/// The 3 s Chromium take: header (EBML, Segment of unknown size, Info, Tracks) and clusters.
fn webm_parts() -> (Vec<u8>, Vec<u8>) {
    let data = common::data("mediarecorder-opus-3s.webm");
    (data[..146].to_vec(), data[146..].to_vec())
}

/// An unknown-size cluster header with Timecode 0.
const CLUSTER_START: [u8; 15] =
    [0x1F, 0x43, 0xB6, 0x75, 0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xE7, 0x81, 0x00];

fn fix(input: &Path, output: &Path) -> Result<audiobook_media::FixOutcome, MediaError> {
    fix_recording(input, output, &FixOptions::default())
}

#[test]
fn webm_50_mb_of_two_byte_unknown_elements_after_the_header() {
    let _serial = SERIAL.lock().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("in.webm"), dir.path().join("out.webm"));
    let (head, clusters) = webm_parts();
    let len = build(&input, &head, 25_000_000, |_, b| b.extend_from_slice(&[0x80, 0x80]), &clusters);
    let outcome = measured("WebM, 25 M unknown elements between Tracks and the clusters", len, || fix(&input, &output));
    let outcome = outcome.unwrap();
    // The junk is kept byte for byte (one item for the whole run); the audio is all there.
    assert_eq!(outcome.duration_ms, 3000);
    assert!(outcome.size_bytes > len, "{outcome:?}");
    let blocks = audio_blocks(File::open(&output).unwrap()).unwrap();
    assert_eq!(blocks.len(), 50);
    let read = measured("audio_blocks on the same input", len, || audio_blocks(File::open(&input).unwrap()));
    assert_eq!(read.unwrap(), blocks);
}

#[test]
fn webm_50_mb_of_two_byte_unknown_elements_inside_a_cluster() {
    let _serial = SERIAL.lock().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("in.webm"), dir.path().join("out.webm"));
    let (head, clusters) = webm_parts();
    let head = [head, CLUSTER_START.to_vec()].concat();
    let len = build(&input, &head, 25_000_000, |_, b| b.extend_from_slice(&[0x80, 0x80]), &clusters);
    let outcome = measured("WebM, 25 M unknown elements inside a cluster", len, || fix(&input, &output)).unwrap();
    assert_eq!(outcome.duration_ms, 3000);
    // Inside a cluster they are copied with it (bounded by the input, no memory per element).
    assert!(outcome.size_bytes > 50_000_000);
}

#[test]
fn webm_10_mb_of_nine_byte_simple_blocks_with_distinct_track_numbers() {
    let _serial = SERIAL.lock().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("in.webm"), dir.path().join("out.webm"));
    let (head, clusters) = webm_parts();
    let head = [head, CLUSTER_START.to_vec()].concat();
    // SimpleBlock (A3) of size 7: a 4-byte track number vint, timecode 0, flags.
    let count = 10_000_000 / 9;
    let unit = |i: usize, b: &mut Vec<u8>| {
        let track = 0x1000_0000u32 | (i as u32 + 2);
        b.extend_from_slice(&[0xA3, 0x87]);
        b.extend_from_slice(&track.to_be_bytes());
        b.extend_from_slice(&[0x00, 0x00, 0x80]);
    };
    let len = build(&input, &head, count, unit, &clusters);
    let outcome = measured("WebM, 1.1 M SimpleBlocks of distinct undeclared tracks", len, || fix(&input, &output));
    let outcome = outcome.unwrap();
    // Blocks of tracks that Tracks does not declare are ignored (the real 50 are counted) and
    // kept byte for byte.
    assert_eq!(outcome.duration_ms, 3000);
    assert!(outcome.size_bytes > len, "{outcome:?}");
    let read = measured("audio_blocks on the same input", len, || audio_blocks(File::open(&input).unwrap()));
    assert_eq!(read.unwrap().len(), 50);
}

#[test]
fn webm_more_tiny_clusters_than_the_cap() {
    let _serial = SERIAL.lock().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("in.webm"), dir.path().join("out.webm"));
    let (head, _) = webm_parts();
    // Cluster of known size 3 holding Timecode 0: 8 bytes each.
    let tiny = [0x1F, 0x43, 0xB6, 0x75, 0x83, 0xE7, 0x81, 0x00];
    let len = build(&input, &head, limits::MAX_KEPT_ITEMS + 10, |_, b| b.extend_from_slice(&tiny), &[]);
    let result = measured("WebM, 1 M empty clusters", len, || fix(&input, &output));
    assert!(matches!(result, Err(MediaError::Limit(_))), "{result:?}");
    assert!(!output.exists());
}

/// The WebKit fixture's ftyp and moov (track 1, AAC).
fn mp4_init() -> Vec<u8> {
    common::mp4::webkit_init()
}

#[test]
fn mp4_50_mb_of_empty_free_boxes() {
    let _serial = SERIAL.lock().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("in.m4a"), dir.path().join("out.m4a"));
    let fragment = common::mp4::fragment(1, 0, &[(1024, vec![7; 100])]);
    let len = build(&input, &mp4_init(), 6_250_000, |_, b| b.extend_from_slice(b"\0\0\0\x08free"), &fragment);
    let outcome = measured("MP4, 6 M empty free boxes", len, || fix(&input, &output)).unwrap();
    assert_eq!(outcome.duration_ms, 23);
    assert!(outcome.size_bytes < 2000);
}

#[test]
fn mp4_more_tiny_fragments_than_the_cap() {
    let _serial = SERIAL.lock().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("in.m4a"), dir.path().join("out.m4a"));
    let mut fragment = common::mp4::fragment(1, 0, &[(1, vec![7])]);
    let len = build(
        &input,
        &mp4_init(),
        limits::MAX_FRAGMENTS + 10,
        |i, b| {
            // mfhd sequence number: distinct, so none is taken for a stale copy.
            fragment[20..24].copy_from_slice(&(i as u32).to_be_bytes());
            b.extend_from_slice(&fragment);
        },
        &[],
    );
    let result = measured("MP4, 500 k one-byte fragments", len, || fix(&input, &output));
    assert!(matches!(result, Err(MediaError::Limit(_))), "{result:?}");
}

/// One fragment whose trun holds only a count: 10 M samples of 1 byte from tfhd defaults,
/// 4 bytes of trun for 10 MB of mdat; and a cut of every other sample.
#[test]
fn mp4_ten_million_default_sized_samples() {
    use common::mp4::{full, mp4box};
    let _serial = SERIAL.lock().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("in.m4a"), dir.path().join("out.m4a"));
    let count = 10_000_000u32;
    // tfhd: default duration 1 tick and size 1 byte; trun: count and data offset.
    let tfhd =
        mp4box(b"tfhd", &full(0, 0x8 | 0x10, &[1u32, 1, 1].iter().flat_map(|v| v.to_be_bytes()).collect::<Vec<_>>()));
    let moof_len = 8 + 16 + 8 + tfhd.len() + 20;
    let trun = mp4box(
        b"trun",
        &full(0, 0x1, &[count, moof_len as u32 + 8].iter().flat_map(|v| v.to_be_bytes()).collect::<Vec<_>>()),
    );
    let moof = mp4box(
        b"moof",
        &[mp4box(b"mfhd", &full(0, 0, &1u32.to_be_bytes())), mp4box(b"traf", &[tfhd, trun].concat())].concat(),
    );
    let head = [mp4_init(), moof, (count + 8).to_be_bytes().to_vec(), b"mdat".to_vec()].concat();
    let len = build(&input, &head, count as usize / 1000, |i, b| b.extend((0..1000).map(|j| (i + j) as u8)), &[]);
    let outcome = measured("MP4, 10 M one-byte samples", len, || fix(&input, &output)).unwrap();
    assert_eq!(outcome.duration_ms, 226_757, "10 M ticks at 44.1 kHz");
    // Cutting every other sample (the largest number of spans a cut may have).
    let spans: Vec<_> = (0..limits::MAX_CUTS as u64).map(|i| 2 * i..2 * i + 1).collect();
    let cut = measured("MP4, the same cut in 10 000 spans", len, || {
        fix_recording(&input, &output, &FixOptions { cut_ms: spans })
    });
    let cut = cut.unwrap();
    assert!((9_900..=10_100).contains(&cut.removed_ms), "{cut:?}");
    let too_many = FixOptions { cut_ms: (0..limits::MAX_CUTS as u64 + 1).map(|i| i..i + 1).collect() };
    assert!(matches!(fix_recording(&input, &output, &too_many), Err(MediaError::Limit(_))));
}

#[test]
fn mp4_moofs_without_an_mdat_and_a_huge_declared_size() {
    let _serial = SERIAL.lock().unwrap();
    let fragment = common::mp4::fragment(1, 0, &[(1024, vec![7; 10])]);
    let moof = &fragment[..fragment.len() - 18];
    let many = [mp4_init(), moof.repeat(5)].concat();
    let mut out = Vec::new();
    let r = audiobook_media::fix_mp4(Cursor::new(&many), &mut out, &[]);
    assert!(matches!(r, Err(MediaError::NotMp4(_))), "{r:?}");
    // A moof claiming 4 GB (64-bit size) at the end of a small file: a cut-off tail, not an
    // allocation.
    let huge =
        [mp4_init(), 1u32.to_be_bytes().to_vec(), b"moof".to_vec(), (4u64 << 30).to_be_bytes().to_vec()].concat();
    let r = measured("MP4, a moof claiming 4 GB", huge.len() as u64, || {
        audiobook_media::fix_mp4(Cursor::new(&huge), &mut Vec::new(), &[])
    });
    assert_eq!(r.unwrap().samples, 0);
}
