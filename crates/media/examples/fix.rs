//! Fixes one recording as the server does and prints the outcome.
//!
//! `cargo run -p audiobook-media --example fix -- INPUT OUTPUT [CUT_START_MS-CUT_END_MS ...]`

use std::path::Path;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, output, cuts @ ..] = args.as_slice() else {
        eprintln!("usage: fix INPUT OUTPUT [START_MS-END_MS ...]");
        std::process::exit(2);
    };
    let cut_ms = cuts
        .iter()
        .map(|c| {
            let (a, b) = c.split_once('-').expect("START_MS-END_MS");
            a.parse().expect("start ms")..b.parse().expect("end ms")
        })
        .collect();
    let options = audiobook_media::FixOptions { cut_ms };
    match audiobook_media::fix_recording(Path::new(input), Path::new(output), &options) {
        Ok(outcome) => println!("{outcome:?}"),
        Err(e) => {
            eprintln!("not fixed: {e}");
            std::process::exit(1);
        }
    }
}
