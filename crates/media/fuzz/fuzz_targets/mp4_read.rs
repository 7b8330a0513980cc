//! mp4_duration_ms on any bytes: returns, never panics.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = audiobook_media::mp4_duration_ms(std::io::Cursor::new(data));
});
