//! What the app does with a take it finds in the vault when it opens (after
//! a reload, a crash, a browser restart or a day offline), and how it tells
//! the person, without asking them anything.
//!
//! Pure Rust, so its tests run natively; the outbox runs it.

use uuid::Uuid;

use super::vault::TakeMeta;
use crate::format;

/// Why a take in the vault was not saved yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// Its recorder is gone (the page closed, reloaded or crashed) before
    /// the take was stopped.
    PageClosed,
    /// It was stopped but not uploaded yet (no connection, or the page
    /// closed while uploading).
    NotUploaded,
}

/// What to do with a take found in the vault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Triage {
    /// Upload it and finish it on the server.
    Recover(Why),
    /// Nothing was recorded: forget it.
    Discard,
    /// Another user's take (this device was signed in as someone else): it
    /// waits until that user's session is back.
    OtherUser,
}

/// What to do with `take`, for the signed-in `user_id`. The caller has made
/// sure no page is recording it any more (it holds the take's lock).
pub fn triage(take: &TakeMeta, user_id: Uuid) -> Triage {
    if take.user_id != user_id {
        return Triage::OtherUser;
    }
    if take.chunks == 0 && take.recording_id.is_none() {
        return Triage::Discard;
    }
    Triage::Recover(if take.finished { Why::NotUploaded } else { Why::PageClosed })
}

/// Where the lock of takes is not available (old browsers), an unfinished
/// take counts as abandoned once its recorder has written nothing for this
/// long (a recorder writes a chunk every second, paused or not once it
/// resumes).
pub const ABANDONED_AFTER_MS: f64 = 60_000.0;

/// Without locks: whether an unfinished take was abandoned by its page.
pub fn looks_abandoned(take: &TakeMeta, now_ms: f64) -> bool {
    take.finished || now_ms - take.updated_at_ms > ABANDONED_AFTER_MS
}

/// The line shown once a recovered take is saved.
pub fn recovered_words(name: &str, duration_ms: u64, why: Why) -> String {
    let length = format::duration_ms(duration_ms);
    match why {
        Why::PageClosed => format!("Recovered “{name}”, {length}, after the page closed."),
        Why::NotUploaded => format!("Uploaded “{name}”, {length}, which was saved on this device."),
    }
}

/// The line shown while a recovered take waits or uploads.
pub fn pending_words(duration_ms: u64, connected: bool) -> String {
    let length = format::duration_ms(duration_ms);
    if connected {
        format!("Recovering a recording of {length} from this device…")
    } else {
        format!("A recording of {length} is saved on this device, will upload when online.")
    }
}

/// The line shown when a recovered take could not be uploaded.
pub fn failed_words(duration_ms: u64, error: &str) -> String {
    let length = format::duration_ms(duration_ms);
    let error = error.trim_end_matches('.');
    format!(
        "A recording of {length} on this device could not be uploaded: {error}. It stays on this device, and \
         AudioBook tries again the next time it opens."
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn take(chunks: u64, finished: bool) -> TakeMeta {
        let mut t = TakeMeta::new(Uuid::from_u128(7), Uuid::new_v4(), "audio/webm;codecs=opus", 1_000.0);
        t.chunks = chunks;
        t.finished = finished;
        t
    }

    #[test]
    fn an_unfinished_take_was_left_by_its_page_and_a_finished_one_not_uploaded() {
        let me = Uuid::from_u128(7);
        assert_eq!(triage(&take(4, false), me), Triage::Recover(Why::PageClosed));
        assert_eq!(triage(&take(4, true), me), Triage::Recover(Why::NotUploaded));
    }

    #[test]
    fn an_empty_take_is_forgotten_and_another_users_take_is_left_alone() {
        let me = Uuid::from_u128(7);
        assert_eq!(triage(&take(0, false), me), Triage::Discard);
        assert_eq!(triage(&take(0, true), me), Triage::Discard);
        assert_eq!(triage(&take(3, true), Uuid::from_u128(8)), Triage::OtherUser);
        // Started on the server but nothing kept here: the server may hold
        // chunks; recovery asks it.
        let mut started = take(0, false);
        started.recording_id = Some(Uuid::new_v4());
        assert_eq!(triage(&started, me), Triage::Recover(Why::PageClosed));
    }

    #[test]
    fn without_locks_a_take_is_abandoned_after_a_silent_minute() {
        let mut t = take(2, false);
        t.updated_at_ms = 10_000.0;
        assert!(!looks_abandoned(&t, 10_000.0 + 5_000.0));
        assert!(looks_abandoned(&t, 10_000.0 + ABANDONED_AFTER_MS + 1.0));
        t.finished = true;
        assert!(looks_abandoned(&t, 10_000.0));
    }

    #[test]
    fn the_words_name_the_take_its_length_and_what_happened() {
        assert_eq!(
            recovered_words("Recording 3", 42_400, Why::PageClosed),
            "Recovered “Recording 3”, 0:42, after the page closed."
        );
        assert_eq!(
            recovered_words("Recording 4", 5_000, Why::NotUploaded),
            "Uploaded “Recording 4”, 0:05, which was saved on this device."
        );
        assert_eq!(
            pending_words(5_000, false),
            "A recording of 0:05 is saved on this device, will upload when online."
        );
        assert!(failed_words(5_000, "The server said no.").contains("uploaded: The server said no. It stays"));
    }
}
