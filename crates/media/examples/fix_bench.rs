//! Builds a long synthetic MediaRecorder take by repeating the 20 s fixture's clusters with
//! shifted timecodes, fixes it with `fix_webm_file`, and prints the time and peak memory.
//!
//! `cargo run --release -p audiobook-media --example fix_bench -- [minutes, default 120]`

use std::fs::File;
use std::io::{BufWriter, Write};
use std::time::Instant;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/mediarecorder-opus-20s.webm");
/// The fixture's layout (see tests/data/README.md): clusters start at 146, each has an
/// unknown 8-byte size, then its Timecode, then SimpleBlocks.
const FIRST_CLUSTER: usize = 146;
const FIXTURE_MS: u64 = 19_980;

fn main() {
    let minutes: u64 = std::env::args().nth(1).map_or(120, |m| m.parse().expect("minutes"));
    let src = std::fs::read(FIXTURE).expect("fixture");
    let clusters = split_clusters(&src[FIRST_CLUSTER..]);

    let dir = std::env::temp_dir().join(format!("fix_bench_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("long.webm");
    let output = dir.join("long.fixed.webm");

    let t = Instant::now();
    let mut w = BufWriter::new(File::create(&input).unwrap());
    w.write_all(&src[..FIRST_CLUSTER]).unwrap();
    let reps = (minutes * 60_000).div_ceil(FIXTURE_MS);
    for rep in 0..reps {
        for &(timecode, rest) in &clusters {
            // Cluster ID, unknown size, a new Timecode (8 bytes wide), the original blocks.
            w.write_all(&[0x1F, 0x43, 0xB6, 0x75, 0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]).unwrap();
            w.write_all(&[0xE7, 0x88]).unwrap();
            w.write_all(&(timecode + rep * FIXTURE_MS).to_be_bytes()).unwrap();
            w.write_all(rest).unwrap();
        }
    }
    w.into_inner().unwrap().sync_all().unwrap();
    let in_len = std::fs::metadata(&input).unwrap().len();
    println!(
        "built {reps} x 20 s = {:.1} min, {} clusters, {:.1} MB in {:.2?}",
        (reps * FIXTURE_MS) as f64 / 60_000.0,
        reps as usize * clusters.len(),
        in_len as f64 / 1e6,
        t.elapsed()
    );
    println!("VmHWM before fixing: {}", vm_hwm());

    let t = Instant::now();
    let report = audiobook_media::fix_webm_file(&input, &output).expect("fix");
    let elapsed = t.elapsed();
    println!("fix_webm_file: {elapsed:.2?} ({:.0} MB/s)", in_len as f64 / 1e6 / elapsed.as_secs_f64());
    println!("{report:?}");
    println!("VmHWM after fixing: {}", vm_hwm());
    assert_eq!(report.duration_ms, reps * FIXTURE_MS);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// (timecode, bytes after the Timecode element) of every cluster.
fn split_clusters(mut data: &[u8]) -> Vec<(u64, &[u8])> {
    let mut out = Vec::new();
    while !data.is_empty() {
        assert_eq!(data[..4], [0x1F, 0x43, 0xB6, 0x75]);
        let body = &data[12..];
        // The next cluster starts at the next cluster ID after a whole SimpleBlock.
        assert_eq!(body[0], 0xE7);
        let tc_len = (body[1] & 0x7F) as usize;
        let timecode = body[2..2 + tc_len].iter().fold(0u64, |a, &b| (a << 8) | b as u64);
        let mut p = 2 + tc_len;
        while p < body.len() && body[p] == 0xA3 {
            let first = body[p + 1];
            let len = first.leading_zeros() as usize + 1;
            let mut size = (first & (0xFFu16 >> len) as u8) as usize;
            for &b in &body[p + 2..p + 1 + len] {
                size = (size << 8) | b as usize;
            }
            p += 1 + len + size;
        }
        out.push((timecode, &body[2 + tc_len..p]));
        data = &body[p..];
    }
    out
}

fn vm_hwm() -> String {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmHWM"))
        .map_or("unknown".into(), |l| l.trim_start_matches("VmHWM:").trim().to_owned())
}
