//! The chunk queue: which chunks of a take exist, which ones the server has
//! confirmed, and which one to send next.
//!
//! It holds numbers only: the chunks' bytes wait in the vault on this device
//! (or, for a chunk the vault refused, in memory), so a take of any length
//! costs the same memory here, and a server that lost chunks it had
//! confirmed can be sent them again.
//!
//! Pure Rust (no browser types) so its tests run natively with
//! `cargo test -p audiobook-web`. The uploader drives it:
//!
//! 1. [`ChunkQueue::push`] as each chunk is kept (seq 0, 1, 2, ...), and
//!    [`ChunkQueue::finish`] when the recorder stopped;
//! 2. [`ChunkQueue::next_to_send`] gives the next seq to emit;
//! 3. [`ChunkQueue::ack`] when the server acknowledged a seq,
//!    [`ChunkQueue::server_expects`] when it refused a gap or answered
//!    `resume-recording` with its `next_seq`, and [`ChunkQueue::rewind`]
//!    when the connection dropped with chunks in flight.

use std::rc::Rc;

/// One piece of a take on its way to the server, numbered from 0.
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    pub seq: u64,
    pub data: Rc<[u8]>,
    pub is_final: bool,
    /// Input level peaks (0–255) over this chunk's span, for the waveform;
    /// sent with the chunk (and again with a resend: the server keeps one
    /// copy per seq).
    pub peaks: Rc<[u8]>,
}

/// What the server's answer meant for the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckOutcome {
    /// New chunks were confirmed.
    Confirmed,
    /// The ack was for chunks already confirmed (a resend after a blip).
    Duplicate,
}

/// Where sending goes on after the server said which chunk it expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expectation {
    /// At or after what it had confirmed: the usual resume.
    GoOn,
    /// Before what it had confirmed: the server lost audio (for example its
    /// spool), and the take is sent again from `from` out of the vault.
    Resend { from: u64 },
}

/// A server answer that the queue cannot reconcile with the take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueError {
    /// The server acknowledged or expects a chunk this take does not have.
    AheadOfClient { server: u64, client: u64 },
    /// No chunk may follow the end of the take.
    AfterFinish,
}

impl std::fmt::Display for QueueError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QueueError::AheadOfClient { server, client } => {
                write!(f, "the server reports chunk {server}, but this take only has {client} chunks")
            }
            QueueError::AfterFinish => write!(f, "the take is already finished"),
        }
    }
}

impl std::error::Error for QueueError {}

/// The chunks of one take, by number.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ChunkQueue {
    /// How many chunks the take has (the seq of the next push).
    pushed: u64,
    /// The recorder stopped: no chunk follows.
    finished: bool,
    /// Every seq below this one is stored on the server.
    confirmed: u64,
    /// The next seq to emit (`confirmed <= next_send <= pushed`).
    next_send: u64,
}

impl ChunkQueue {
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn new() -> Self {
        Self::default()
    }

    /// A take of `chunks` chunks kept earlier (in the vault), none of them
    /// known to be on the server yet.
    pub fn with_chunks(chunks: u64, finished: bool) -> Self {
        ChunkQueue { pushed: chunks, finished, ..Self::default() }
    }

    /// Adds the next chunk of the take and returns its seq.
    pub fn push(&mut self) -> Result<u64, QueueError> {
        if self.finished {
            return Err(QueueError::AfterFinish);
        }
        self.pushed += 1;
        Ok(self.pushed - 1)
    }

    /// The recorder stopped: the take has all its chunks.
    pub fn finish(&mut self) {
        self.finished = true;
    }

    /// The next chunk to emit, if any was not sent since the last rewind,
    /// and whether it is the take's last.
    pub fn next_to_send(&mut self) -> Option<(u64, bool)> {
        if self.next_send >= self.pushed {
            return None;
        }
        let seq = self.next_send;
        self.next_send += 1;
        Some((seq, self.finished && seq + 1 == self.pushed))
    }

    /// The server stored chunk `seq` (and, since it appends in order, every
    /// one before it).
    pub fn ack(&mut self, seq: u64) -> Result<AckOutcome, QueueError> {
        if seq >= self.pushed {
            return Err(QueueError::AheadOfClient { server: seq, client: self.pushed });
        }
        if seq < self.confirmed {
            return Ok(AckOutcome::Duplicate);
        }
        self.confirmed = seq + 1;
        self.next_send = self.next_send.max(self.confirmed);
        Ok(AckOutcome::Confirmed)
    }

    /// The server expects `next_seq` next (a refused gap, or the answer to
    /// `resume-recording`): everything below it is stored there, and sending
    /// goes on from it, even below what it confirmed before.
    pub fn server_expects(&mut self, next_seq: u64) -> Result<Expectation, QueueError> {
        if next_seq > self.pushed {
            return Err(QueueError::AheadOfClient { server: next_seq, client: self.pushed });
        }
        let outcome =
            if next_seq < self.confirmed { Expectation::Resend { from: next_seq } } else { Expectation::GoOn };
        self.confirmed = next_seq;
        self.next_send = next_seq;
        Ok(outcome)
    }

    /// The connection dropped: chunks in flight will be sent again.
    pub fn rewind(&mut self) {
        self.next_send = self.confirmed;
    }

    /// How many chunks the take has so far (the `chunks` of `stop-recording`).
    pub fn chunk_count(&self) -> u64 {
        self.pushed
    }

    /// How many chunks the server confirmed (seq `0..confirmed`).
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn confirmed(&self) -> u64 {
        self.confirmed
    }

    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// The take is finished and the server confirmed every chunk.
    pub fn is_complete(&self) -> bool {
        self.finished && self.confirmed == self.pushed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue_with(n: u64) -> ChunkQueue {
        let mut q = ChunkQueue::new();
        for _ in 0..n {
            q.push().unwrap();
        }
        q
    }

    fn send_all(q: &mut ChunkQueue) -> Vec<u64> {
        std::iter::from_fn(|| q.next_to_send()).map(|(seq, _)| seq).collect()
    }

    #[test]
    fn chunks_are_numbered_from_zero_and_sent_once_in_order() {
        let mut q = queue_with(3);
        assert_eq!(send_all(&mut q), vec![0, 1, 2]);
        assert_eq!(q.next_to_send(), None);
        assert_eq!(q.push().unwrap(), 3);
        assert_eq!(send_all(&mut q), vec![3]);
    }

    #[test]
    fn an_ack_confirms_every_earlier_chunk() {
        let mut q = queue_with(3);
        send_all(&mut q);
        assert_eq!(q.ack(0).unwrap(), AckOutcome::Confirmed);
        assert_eq!(q.confirmed(), 1);
        // The server appends in order.
        assert_eq!(q.ack(2).unwrap(), AckOutcome::Confirmed);
        assert_eq!(q.confirmed(), 3);
        assert_eq!(q.ack(1).unwrap(), AckOutcome::Duplicate);
        assert_eq!(q.confirmed(), 3);
    }

    #[test]
    fn rewind_resends_everything_unconfirmed() {
        let mut q = queue_with(4);
        send_all(&mut q);
        q.ack(1).unwrap();
        q.rewind();
        assert_eq!(send_all(&mut q), vec![2, 3]);
    }

    #[test]
    fn resume_goes_on_from_the_servers_next_seq() {
        let mut q = queue_with(5);
        send_all(&mut q);
        q.ack(0).unwrap();
        // The connection dropped; the server had stored 0..3 but two acks were lost.
        assert_eq!(q.server_expects(3).unwrap(), Expectation::GoOn);
        assert_eq!(send_all(&mut q), vec![3, 4]);
        // More audio arrives meanwhile and follows.
        q.push().unwrap();
        q.finish();
        assert_eq!(q.next_to_send(), Some((5, true)));
        q.ack(5).unwrap();
        assert!(q.is_complete());
    }

    #[test]
    fn a_server_that_lost_confirmed_chunks_gets_them_again() {
        let mut q = queue_with(4);
        send_all(&mut q);
        q.ack(3).unwrap();
        // Its spool was lost: it starts over.
        assert_eq!(q.server_expects(0).unwrap(), Expectation::Resend { from: 0 });
        assert_eq!(q.confirmed(), 0);
        assert_eq!(send_all(&mut q), vec![0, 1, 2, 3]);
        // A late ack of the old copy must not count the lost chunks as stored.
        assert_eq!(q.ack(1).unwrap(), AckOutcome::Confirmed);
        assert_eq!(q.confirmed(), 2);
    }

    #[test]
    fn a_gap_refusal_rewinds_to_the_expected_seq() {
        let mut q = queue_with(4);
        assert_eq!(send_all(&mut q), vec![0, 1, 2, 3]);
        // Chunk 1 got lost; the server refuses 2 with next_seq 1.
        q.ack(0).unwrap();
        assert_eq!(q.server_expects(1).unwrap(), Expectation::GoOn);
        assert_eq!(send_all(&mut q), vec![1, 2, 3]);
    }

    #[test]
    fn server_answers_beyond_the_take_are_errors() {
        let mut q = queue_with(2);
        send_all(&mut q);
        assert_eq!(q.ack(2), Err(QueueError::AheadOfClient { server: 2, client: 2 }));
        assert_eq!(q.server_expects(3), Err(QueueError::AheadOfClient { server: 3, client: 2 }));
        assert_eq!(q.ack(u64::MAX), Err(QueueError::AheadOfClient { server: u64::MAX, client: 2 }));
        // Resuming exactly at the end is fine.
        q.server_expects(2).unwrap();
        assert_eq!(q.next_to_send(), None);
    }

    #[test]
    fn the_take_is_complete_only_when_finished_and_confirmed() {
        let mut q = queue_with(2);
        send_all(&mut q);
        q.ack(1).unwrap();
        assert!(!q.is_complete(), "the recorder may still add chunks");
        q.finish();
        assert!(q.is_complete());
        assert_eq!(q.push(), Err(QueueError::AfterFinish));
    }

    #[test]
    fn only_the_last_chunk_of_a_finished_take_is_final() {
        let mut q = queue_with(2);
        q.finish();
        let sent: Vec<_> = std::iter::from_fn(|| q.next_to_send()).collect();
        assert_eq!(sent, vec![(0, false), (1, true)]);
    }

    #[test]
    fn a_take_kept_earlier_is_sent_from_the_start() {
        let mut q = ChunkQueue::with_chunks(3, true);
        assert_eq!(q.chunk_count(), 3);
        assert_eq!(q.confirmed(), 0);
        assert_eq!(send_all(&mut q), vec![0, 1, 2]);
        let mut empty = ChunkQueue::with_chunks(0, true);
        assert_eq!(empty.next_to_send(), None);
        assert!(empty.is_complete());
    }
}
