//! fix_wav on any bytes: refuses or writes a WAV hound reads with every whole sample, and
//! that fixes to itself.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| audiobook_media::invariants::wav(data));
