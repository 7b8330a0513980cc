//! audio_blocks (the WebM scan with whole payloads) on any bytes: returns, never panics.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = audiobook_media::audio_blocks(data);
});
