//! Small view pieces the pages compose.

mod clock;
mod connection;
mod help;
mod live_waveform;
mod player;
mod quality;
mod record_item;
mod search;
mod status;
mod theme_toggle;
mod toast;
mod transcript;
mod waveform;

pub use clock::Clock;
pub use connection::ConnectionBadge;
pub use help::{ShortcutButton, ShortcutHelp, Shortcuts};
pub use live_waveform::LiveWaveform;
pub use player::{Player, seek_by, toggle_play};
pub use quality::QualitySetting;
pub use record_item::{RecordItem, preload_panels as preload_record_panels};
pub use search::{SearchHit, play_from};
pub use status::{StatusBanner, Tone};
pub use theme_toggle::ThemeToggle;
pub use toast::{Toast, ToastRegion};
pub use transcript::TranscriptView;
pub use waveform::WaveformSeek;
