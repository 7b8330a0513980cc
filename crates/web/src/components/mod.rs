//! Small view pieces the pages compose.

mod clock;
mod connection;
mod level_meter;
mod player;
mod record_item;
mod status;

pub use clock::Clock;
pub use connection::ConnectionBadge;
pub use level_meter::LevelMeter;
pub use player::Player;
pub use record_item::RecordItem;
pub use status::{StatusBanner, Tone};
