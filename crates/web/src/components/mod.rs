//! Small view pieces the pages compose.

mod clock;
mod connection;
mod help;
mod level_meter;
mod player;
mod record_item;
mod search;
mod status;
mod toast;
mod transcript;
mod waveform;

pub use clock::Clock;
pub use connection::ConnectionBadge;
pub use help::{ShortcutButton, ShortcutHelp, Shortcuts};
pub use level_meter::LevelMeter;
pub use player::{Player, seek_by, toggle_play};
pub use record_item::RecordItem;
pub use search::{SearchHit, play_from};
pub use status::{StatusBanner, Tone};
pub use toast::{Toast, ToastRegion};
pub use transcript::TranscriptView;
pub use waveform::WaveformSeek;
