//! fix_mp4 (with and without a cut) on any bytes: refuses or writes a file that fixes to
//! itself with the same duration.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| audiobook_media::invariants::mp4(data));
