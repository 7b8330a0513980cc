//! fix_webm on any bytes: refuses or writes a file with the same blocks that fixes to itself.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| audiobook_media::invariants::webm(data));
