//! What to ask the server next for one take, and what each answer means:
//! the protocol of a take's upload as a state machine, without any I/O.
//!
//! `start-recording` (once, when the server never saw the take) →
//! `resume-recording` on every new connection → `append-recording` for each
//! chunk the server lacks → `stop-recording` once the take is finished and
//! confirmed. The same machine serves a take being recorded and a take
//! recovered from the vault after a reload, a crash or a day offline.
//!
//! When the server no longer holds a take open (it was finalized as
//! `interrupted` while this device was away, or the server never heard of
//! it), `stop-recording` tells what became of it: a take saved complete is
//! done; otherwise the whole take is sent again as a new recording from the
//! vault, and the partial copies it replaces are named so they can be
//! removed once the complete one is saved.
//!
//! Pure Rust, so its tests run natively.

use audiobook_wire::{Record, RecordStatus};
use uuid::Uuid;

use super::queue::{ChunkQueue, QueueError};

/// The next request for a take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Nothing to do until a chunk arrives, the take finishes or the
    /// connection comes back.
    Wait,
    /// `start-recording`: the server has not seen this take yet.
    Start,
    /// `resume-recording`: where the server stands on this connection.
    Resume { recording_id: Uuid },
    /// `append-recording` of chunk `seq` (read from the vault).
    Send { recording_id: Uuid, seq: u64, is_final: bool },
    /// `stop-recording` with the take's chunk count.
    Stop { recording_id: Uuid, chunks: u64 },
    /// The take is finished with no audio anywhere: nothing to save.
    Empty,
}

/// What an answer means for the person.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Nothing to tell; ask [`Upload::next_step`] again.
    Going,
    /// The take starts over as a new recording (the server lost it or kept
    /// only part of it): the caller keeps the new state in the vault.
    StartedOver,
    /// The server saved the take; `replaces` are partial copies of it on the
    /// server, to remove now.
    Saved { record: Box<Record>, replaces: Vec<Uuid> },
    /// The server refused the take for good, in its words.
    Failed(String),
}

/// One take's upload.
#[derive(Debug, Clone, PartialEq)]
pub struct Upload {
    queue: ChunkQueue,
    recording_id: Option<Uuid>,
    /// The server's position is known on the current connection.
    synced: bool,
    /// The server no longer holds the take open: `stop-recording` says
    /// whether it was saved.
    asking_fate: bool,
    /// Bytes the server reported as received.
    received_bytes: u64,
    /// Partial copies on the server that the complete take replaces.
    replaces: Vec<Uuid>,
}

impl Upload {
    /// A take of `chunks` chunks (`finished`: the recorder stopped), known to
    /// the server as `recording_id` if it was started there.
    pub fn new(recording_id: Option<Uuid>, chunks: u64, finished: bool, replaces: Vec<Uuid>) -> Upload {
        Upload {
            queue: ChunkQueue::with_chunks(chunks, finished),
            recording_id,
            synced: false,
            asking_fate: false,
            received_bytes: 0,
            replaces,
        }
    }

    pub fn recording_id(&self) -> Option<Uuid> {
        self.recording_id
    }

    pub fn replaces(&self) -> &[Uuid] {
        &self.replaces
    }

    /// Bytes the server has of this take, as it last said.
    pub fn received_bytes(&self) -> u64 {
        self.received_bytes
    }

    pub fn chunk_count(&self) -> u64 {
        self.queue.chunk_count()
    }

    /// The recorder kept one more chunk (in the vault or memory); its seq.
    pub fn push_chunk(&mut self) -> Result<u64, QueueError> {
        self.queue.push()
    }

    /// The recorder stopped.
    pub fn finish(&mut self) {
        self.queue.finish();
    }

    /// The next request, on a connected socket.
    pub fn next_step(&mut self) -> Step {
        let Some(recording_id) = self.recording_id else { return Step::Start };
        if self.asking_fate {
            return Step::Stop { recording_id, chunks: self.queue.chunk_count() };
        }
        if !self.synced {
            return Step::Resume { recording_id };
        }
        if let Some((seq, is_final)) = self.queue.next_to_send() {
            return Step::Send { recording_id, seq, is_final };
        }
        if self.queue.is_complete() {
            if self.queue.chunk_count() == 0 {
                return Step::Empty;
            }
            return Step::Stop { recording_id, chunks: self.queue.chunk_count() };
        }
        Step::Wait
    }

    /// The connection dropped: what was in flight is sent again after the
    /// next resume.
    pub fn connection_lost(&mut self) {
        self.synced = false;
        self.queue.rewind();
    }

    /// `start-recording` answered with the take's id.
    pub fn started(&mut self, recording_id: Uuid) {
        self.recording_id = Some(recording_id);
        self.synced = true;
        self.received_bytes = 0;
        // A new recording holds nothing yet.
        let _ = self.queue.server_expects(0);
    }

    /// `resume-recording` answered: the server has chunks `0..next_seq`.
    pub fn resumed(&mut self, next_seq: u64, received_bytes: u64) -> Outcome {
        if next_seq > self.queue.chunk_count() && self.queue.is_finished() {
            // Chunks the vault could not keep (it was full) went to the
            // server from memory: its copy is the longer one, and complete.
            self.queue = ChunkQueue::with_chunks(next_seq, true);
        }
        match self.queue.server_expects(next_seq) {
            Ok(_) => {
                self.synced = true;
                self.received_bytes = received_bytes;
                Outcome::Going
            }
            Err(e) => Outcome::Failed(format!("the server's copy does not match this take ({e})")),
        }
    }

    /// `resume-recording` was refused for good (not a temporary refusal):
    /// the take is not open on the server any more.
    pub fn resume_refused(&mut self) {
        self.asking_fate = true;
    }

    /// `append-recording` of `seq` acknowledged.
    pub fn acked(&mut self, seq: u64, received_bytes: u64) -> Outcome {
        match self.queue.ack(seq) {
            Ok(_) => {
                self.received_bytes = received_bytes;
                Outcome::Going
            }
            Err(e) => Outcome::Failed(format!("the server's copy does not match this take ({e})")),
        }
    }

    /// `append-recording` of `seq` refused for good; `next_seq` is where the
    /// server stands when it said so.
    pub fn append_refused(&mut self, seq: u64, next_seq: Option<u64>, error: &str) -> Outcome {
        match next_seq {
            // A gap (a chunk before this one is missing), or the server has
            // more than we thought: go on from where it stands.
            Some(next) if next != seq => match self.queue.server_expects(next) {
                Ok(_) => Outcome::Going,
                Err(e) => Outcome::Failed(format!("the server's copy does not match this take ({e})")),
            },
            // This very chunk is refused (the take or the account is too
            // large): sending it again would be refused again.
            _ => Outcome::Failed(error.to_string()),
        }
    }

    /// `stop-recording` answered with the record.
    pub fn stopped(&mut self, record: Record) -> Outcome {
        match record.status {
            RecordStatus::Ready | RecordStatus::Pending => {
                Outcome::Saved { record: Box::new(record), replaces: std::mem::take(&mut self.replaces) }
            }
            // Finalized with what the server had while this device was
            // away: send the complete take as a new recording.
            RecordStatus::Interrupted => {
                self.start_over(Some(record.id));
                Outcome::StartedOver
            }
            // Still open (not a stop's answer): ask where it stands.
            RecordStatus::Recording => {
                self.asking_fate = false;
                self.synced = false;
                Outcome::Going
            }
        }
    }

    /// `stop-recording` refused for good.
    pub fn stop_refused(&mut self, next_seq: Option<u64>, error: &str) -> Outcome {
        if let Some(next) = next_seq {
            // Chunks are missing on the server: send them, then stop again.
            self.asking_fate = false;
            return match self.queue.server_expects(next) {
                Ok(_) => {
                    self.synced = true;
                    Outcome::Going
                }
                Err(e) => Outcome::Failed(format!("the server's copy does not match this take ({e})")),
            };
        }
        if self.asking_fate {
            // Neither open nor saved: the server does not have it at all.
            self.start_over(None);
            return Outcome::StartedOver;
        }
        Outcome::Failed(error.to_string())
    }

    fn start_over(&mut self, replaces: Option<Uuid>) {
        self.replaces.extend(replaces);
        self.recording_id = None;
        self.synced = false;
        self.asking_fate = false;
        self.received_bytes = 0;
        let _ = self.queue.server_expects(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    /// A record as the server sends it (fields it may add later keep their defaults).
    fn record(id: Uuid, status: RecordStatus) -> Record {
        serde_json::from_value(serde_json::json!({
            "id": id, "user_id": Uuid::nil(), "name": "Recording 1", "link": "http://x/media/1",
            "mime_type": "audio/webm", "size_bytes": 10, "duration_ms": 1000, "status": status,
            "created_at": Utc::now(), "updated_at": Utc::now(),
        }))
        .expect("a record")
    }

    /// Drives `u` against a server that accepts everything, and returns the
    /// steps it took until it waits or stops.
    fn run(u: &mut Upload, id: Uuid, server_has: &mut u64) -> Vec<Step> {
        let mut steps = Vec::new();
        for _ in 0..100 {
            let step = u.next_step();
            steps.push(step);
            match step {
                Step::Wait | Step::Stop { .. } | Step::Empty => break,
                Step::Start => u.started(id),
                Step::Resume { .. } => assert_eq!(u.resumed(*server_has, 0), Outcome::Going),
                Step::Send { seq, .. } => {
                    assert_eq!(seq, *server_has, "chunks go in order");
                    *server_has += 1;
                    assert_eq!(u.acked(seq, 0), Outcome::Going);
                }
            }
        }
        steps
    }

    #[test]
    fn a_take_recorded_offline_is_started_sent_and_stopped() {
        let id = Uuid::new_v4();
        let mut u = Upload::new(None, 3, true, vec![]);
        let mut has = 0;
        let steps = run(&mut u, id, &mut has);
        assert_eq!(steps[0], Step::Start);
        assert_eq!(has, 3);
        assert_eq!(*steps.last().unwrap(), Step::Stop { recording_id: id, chunks: 3 });
        let saved = u.stopped(record(id, RecordStatus::Ready));
        assert!(matches!(saved, Outcome::Saved { ref replaces, .. } if replaces.is_empty()));
    }

    #[test]
    fn a_recovered_take_resumes_and_sends_only_what_is_missing() {
        let id = Uuid::new_v4();
        // The page closed after 5 chunks were kept; the server had 3.
        let mut u = Upload::new(Some(id), 5, true, vec![]);
        let mut has = 3;
        let steps = run(&mut u, id, &mut has);
        assert_eq!(steps[0], Step::Resume { recording_id: id });
        let sent: Vec<u64> =
            steps.iter().filter_map(|s| if let Step::Send { seq, .. } = s { Some(*seq) } else { None }).collect();
        assert_eq!(sent, vec![3, 4]);
        assert_eq!(*steps.last().unwrap(), Step::Stop { recording_id: id, chunks: 5 });
    }

    #[test]
    fn a_live_take_waits_for_chunks_and_stops_only_once_finished() {
        let id = Uuid::new_v4();
        let mut u = Upload::new(None, 0, false, vec![]);
        let mut has = 0;
        assert_eq!(run(&mut u, id, &mut has), vec![Step::Start, Step::Wait]);
        u.push_chunk().unwrap();
        assert_eq!(run(&mut u, id, &mut has).last(), Some(&Step::Wait));
        u.push_chunk().unwrap();
        u.finish();
        assert_eq!(run(&mut u, id, &mut has).last(), Some(&Step::Stop { recording_id: id, chunks: 2 }));
    }

    #[test]
    fn a_dropped_connection_resumes_before_sending_again() {
        let id = Uuid::new_v4();
        let mut u = Upload::new(Some(id), 4, false, vec![]);
        assert_eq!(u.next_step(), Step::Resume { recording_id: id });
        u.resumed(0, 0);
        assert!(matches!(u.next_step(), Step::Send { seq: 0, .. }));
        assert!(matches!(u.next_step(), Step::Send { seq: 1, .. }));
        u.connection_lost();
        assert_eq!(u.next_step(), Step::Resume { recording_id: id });
        // The server got chunk 0 and 1 before the drop.
        u.resumed(2, 2000);
        assert_eq!(u.received_bytes(), 2000);
        assert!(matches!(u.next_step(), Step::Send { seq: 2, .. }));
    }

    #[test]
    fn a_server_that_lost_the_spool_gets_the_whole_take_again() {
        let id = Uuid::new_v4();
        let mut u = Upload::new(Some(id), 4, true, vec![]);
        let mut has = 0;
        run(&mut u, id, &mut has);
        assert_eq!(has, 4);
        u.connection_lost();
        // The restarted server lost its spool and starts the take over.
        let mut has = 0;
        let steps = run(&mut u, id, &mut has);
        assert_eq!(has, 4, "every chunk sent again: {steps:?}");
        assert_eq!(*steps.last().unwrap(), Step::Stop { recording_id: id, chunks: 4 });
    }

    #[test]
    fn a_take_finalized_while_away_is_sent_again_and_replaces_the_partial_copy() {
        let old = Uuid::new_v4();
        let mut u = Upload::new(Some(old), 6, true, vec![]);
        assert_eq!(u.next_step(), Step::Resume { recording_id: old });
        u.resume_refused();
        assert_eq!(u.next_step(), Step::Stop { recording_id: old, chunks: 6 });
        assert_eq!(u.stopped(record(old, RecordStatus::Interrupted)), Outcome::StartedOver);
        assert_eq!(u.recording_id(), None);
        let new = Uuid::new_v4();
        let mut has = 0;
        let steps = run(&mut u, new, &mut has);
        assert_eq!(steps[0], Step::Start);
        assert_eq!(has, 6);
        match u.stopped(record(new, RecordStatus::Ready)) {
            Outcome::Saved { record, replaces } => {
                assert_eq!(record.id, new);
                assert_eq!(replaces, vec![old]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_take_already_saved_is_done_without_sending_anything() {
        // The stop's answer was lost when the page closed.
        let id = Uuid::new_v4();
        let mut u = Upload::new(Some(id), 3, true, vec![]);
        u.next_step();
        u.resume_refused();
        assert_eq!(u.next_step(), Step::Stop { recording_id: id, chunks: 3 });
        assert!(matches!(u.stopped(record(id, RecordStatus::Ready)), Outcome::Saved { .. }));
    }

    #[test]
    fn a_take_the_server_never_had_is_started_again() {
        let id = Uuid::new_v4();
        let mut u = Upload::new(Some(id), 2, true, vec![]);
        u.next_step();
        u.resume_refused();
        u.next_step();
        assert_eq!(u.stop_refused(None, "No recording is open"), Outcome::StartedOver);
        assert_eq!(u.next_step(), Step::Start);
        assert!(u.replaces().is_empty());
    }

    #[test]
    fn a_stop_with_chunks_missing_sends_them_and_stops_again() {
        let id = Uuid::new_v4();
        let mut u = Upload::new(Some(id), 3, true, vec![]);
        let mut has = 3;
        run(&mut u, id, &mut has);
        assert_eq!(u.stop_refused(Some(1), "Chunks 1..3 have not arrived yet"), Outcome::Going);
        assert!(matches!(u.next_step(), Step::Send { seq: 1, .. }));
    }

    #[test]
    fn refusals_of_this_very_chunk_fail_instead_of_looping() {
        let id = Uuid::new_v4();
        let mut u = Upload::new(Some(id), 3, true, vec![]);
        u.resumed(0, 0);
        u.next_step();
        assert_eq!(u.append_refused(0, Some(0), "too large"), Outcome::Failed("too large".into()));
        assert_eq!(u.append_refused(0, None, "not yours"), Outcome::Failed("not yours".into()));
        // A gap is not a refusal of the chunk: go on from the server's seq.
        let mut u = Upload::new(Some(id), 3, true, vec![]);
        u.resumed(0, 0);
        u.next_step();
        u.next_step();
        assert_eq!(u.append_refused(1, Some(0), "gap"), Outcome::Going);
        assert!(matches!(u.next_step(), Step::Send { seq: 0, .. }));
    }

    #[test]
    fn chunks_the_full_vault_could_not_keep_are_taken_from_the_server() {
        // The vault kept 2 chunks; 2 more went to the server from memory
        // before the page closed.
        let id = Uuid::new_v4();
        let mut u = Upload::new(Some(id), 2, true, vec![]);
        assert_eq!(u.next_step(), Step::Resume { recording_id: id });
        assert_eq!(u.resumed(4, 4000), Outcome::Going);
        assert_eq!(u.next_step(), Step::Stop { recording_id: id, chunks: 4 });
    }

    #[test]
    fn a_finished_take_without_audio_anywhere_is_empty() {
        let id = Uuid::new_v4();
        let mut u = Upload::new(Some(id), 0, true, vec![]);
        u.next_step();
        u.resumed(0, 0);
        assert_eq!(u.next_step(), Step::Empty);
    }

    #[test]
    fn a_server_claiming_more_than_the_take_has_is_not_believed() {
        let id = Uuid::new_v4();
        // While recording, the server cannot have more than was sent.
        let mut u = Upload::new(Some(id), 2, false, vec![]);
        assert!(matches!(u.resumed(9, 0), Outcome::Failed(_)));
        let mut u = Upload::new(Some(id), 2, true, vec![]);
        assert!(matches!(u.acked(u64::MAX, 0), Outcome::Failed(_)));
        assert!(matches!(u.append_refused(0, Some(7), "gap"), Outcome::Failed(_)));
    }
}
