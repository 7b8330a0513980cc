//! A lossless take as the server spools it (the wire's header, then 16-bit mono samples of a
//! tone) of the given length, written to disk, then `fix_wav_file` (hound) on it: prints the
//! data rate, the finalize time and peak memory.
//!
//! `cargo run --release -p audiobook-media --example wav_bench -- [minutes, default 60] [rate, default 48000]`

use std::fs::File;
use std::io::{BufWriter, Write};
use std::time::Instant;

use audiobook_wire::lossless;

fn main() {
    let minutes: u64 = std::env::args().nth(1).map_or(60, |m| m.parse().expect("minutes"));
    let rate: u32 = std::env::args().nth(2).map_or(48_000, |r| r.parse().expect("rate"));
    let dir = std::env::temp_dir().join(format!("wav_bench_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("take.data");
    let output = dir.join("take.wav");

    let per_second = lossless::bytes_per_second(rate);
    println!(
        "data rate at {rate} Hz, 16-bit mono: {per_second} B/s = {:.2} MB per minute = {:.1} MB per hour",
        (per_second * 60) as f64 / 1e6,
        (per_second * 3600) as f64 / 1e6
    );
    let t = Instant::now();
    let mut w = BufWriter::new(File::create(&input).unwrap());
    w.write_all(&lossless::stream_header(rate)).unwrap();
    // One second of a 440 Hz tone, repeated (about 1 s chunks, as the web app sends).
    let second: Vec<u8> = (0..rate)
        .map(|i| ((f64::from(i) / f64::from(rate) * 440.0 * std::f64::consts::TAU).sin() * 12_000.0) as i16)
        .flat_map(i16::to_le_bytes)
        .collect();
    for _ in 0..minutes * 60 {
        w.write_all(&second).unwrap();
    }
    w.into_inner().unwrap().sync_all().unwrap();
    let in_len = std::fs::metadata(&input).unwrap().len();
    println!("spool of {minutes} min: {:.1} MB written in {:.2?}", in_len as f64 / 1e6, t.elapsed());
    println!("VmHWM before finalizing: {}", vm_hwm());

    let t = Instant::now();
    let report = audiobook_media::fix_wav_file(&input, &output).expect("fix_wav_file");
    let elapsed = t.elapsed();
    println!(
        "fix_wav_file (hound, fsync included): {elapsed:.2?} ({:.0} MB/s)",
        in_len as f64 / 1e6 / elapsed.as_secs_f64()
    );
    println!(
        "samples {}, duration_ms {}, output {} bytes, {} peaks",
        report.samples,
        report.duration_ms,
        report.output_bytes,
        report.peaks.len()
    );
    println!("VmHWM after finalizing: {}", vm_hwm());
    assert_eq!(report.duration_ms, minutes * 60_000);
    assert_eq!(report.output_bytes, in_len);
    std::fs::remove_dir_all(&dir).unwrap();
}

fn vm_hwm() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(|l| l.split_whitespace().skip(1).collect::<Vec<_>>().join(" "))
        })
        .unwrap_or_else(|| "unknown".into())
}
