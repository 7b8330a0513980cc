//! The chunk queue: every chunk of a take stays here until the server
//! acknowledged it, so a dropped connection loses nothing.
//!
//! Pure Rust (no browser types) so its tests run natively with
//! `cargo test -p audiobook-web`. The uploader drives it:
//!
//! 1. [`ChunkQueue::push`] as MediaRecorder hands over data (seq 0, 1, 2, ...);
//! 2. [`ChunkQueue::next_to_send`] gives the next chunk to emit;
//! 3. [`ChunkQueue::ack`] when the server acknowledged a seq,
//!    [`ChunkQueue::server_expects`] when it refused a gap or answered
//!    `resume-recording` with its `next_seq`, and [`ChunkQueue::rewind`]
//!    when the connection dropped with chunks in flight.

use std::collections::VecDeque;
use std::rc::Rc;

/// One piece of a take, numbered from 0.
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
    /// New chunks were confirmed and dropped from memory.
    Confirmed,
    /// The ack was for chunks already confirmed (a resend after a blip).
    Duplicate,
}

/// A server answer that the queue cannot reconcile with what it sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueError {
    /// The server acknowledged or expects a chunk the client never made.
    AheadOfClient { server: u64, client: u64 },
    /// The server asks for a chunk the client already dropped after an ack:
    /// the server lost audio it had confirmed.
    ServerLostAudio { server: u64, confirmed: u64 },
    /// No chunk may follow the final one.
    AfterFinal,
}

impl std::fmt::Display for QueueError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QueueError::AheadOfClient { server, client } => {
                write!(f, "the server reports chunk {server}, but this take only has {client} chunks")
            }
            QueueError::ServerLostAudio { server, confirmed } => write!(
                f,
                "the server asks again for chunk {server} after confirming up to {confirmed}; the audio before it cannot be re-sent"
            ),
            QueueError::AfterFinal => write!(f, "the take is already finished"),
        }
    }
}

impl std::error::Error for QueueError {}

/// Chunks of one take, from the oldest unconfirmed to the newest.
#[derive(Debug, Default)]
pub struct ChunkQueue {
    /// Unconfirmed chunks, in seq order; the first has seq `confirmed`.
    pending: VecDeque<Chunk>,
    /// Every seq below this one is stored on the server.
    confirmed: u64,
    /// The next seq to emit (`confirmed <= next_send <= pushed`).
    next_send: u64,
    /// How many chunks were pushed (the seq of the next push).
    pushed: u64,
    /// Whether the final chunk was pushed.
    finished: bool,
    /// Bytes confirmed by the server.
    confirmed_bytes: u64,
}

impl ChunkQueue {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the next chunk of the take (without peaks) and returns its seq.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn push(&mut self, data: impl Into<Rc<[u8]>>, is_final: bool) -> Result<u64, QueueError> {
        self.push_with_peaks(data, Vec::new(), is_final)
    }

    /// Adds the next chunk with the level peaks measured while it was
    /// recorded, and returns its seq.
    pub fn push_with_peaks(
        &mut self,
        data: impl Into<Rc<[u8]>>,
        peaks: impl Into<Rc<[u8]>>,
        is_final: bool,
    ) -> Result<u64, QueueError> {
        if self.finished {
            return Err(QueueError::AfterFinal);
        }
        let seq = self.pushed;
        self.pending.push_back(Chunk { seq, data: data.into(), is_final, peaks: peaks.into() });
        self.pushed += 1;
        self.finished = is_final;
        Ok(seq)
    }

    /// The next chunk to emit, if any was not sent since the last rewind.
    pub fn next_to_send(&mut self) -> Option<Chunk> {
        let index = usize::try_from(self.next_send - self.confirmed).ok()?;
        let chunk = self.pending.get(index)?.clone();
        self.next_send += 1;
        Some(chunk)
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
        self.confirm_below(seq + 1);
        Ok(AckOutcome::Confirmed)
    }

    /// The server expects `next_seq` next (a refused gap, or the answer to
    /// `resume-recording`): everything below it is stored, and sending goes on
    /// from there.
    pub fn server_expects(&mut self, next_seq: u64) -> Result<(), QueueError> {
        if next_seq > self.pushed {
            return Err(QueueError::AheadOfClient { server: next_seq, client: self.pushed });
        }
        if next_seq < self.confirmed {
            return Err(QueueError::ServerLostAudio { server: next_seq, confirmed: self.confirmed });
        }
        self.confirm_below(next_seq);
        self.next_send = next_seq;
        Ok(())
    }

    /// The connection dropped: chunks in flight will be sent again.
    pub fn rewind(&mut self) {
        self.next_send = self.confirmed;
    }

    fn confirm_below(&mut self, end: u64) {
        while self.confirmed < end {
            let chunk = self.pending.pop_front().expect("a pending chunk for every unconfirmed seq");
            debug_assert_eq!(chunk.seq, self.confirmed);
            self.confirmed_bytes += chunk.data.len() as u64;
            self.confirmed += 1;
        }
        self.next_send = self.next_send.max(self.confirmed);
    }

    /// Bytes the server has not confirmed yet (what a closed tab would lose).
    pub fn unsent_bytes(&self) -> u64 {
        self.pending.iter().map(|c| c.data.len() as u64).sum()
    }

    /// Bytes the server confirmed.
    pub fn confirmed_bytes(&self) -> u64 {
        self.confirmed_bytes
    }

    /// How many chunks the take has so far (the `chunks` of `stop-recording`).
    pub fn chunk_count(&self) -> u64 {
        self.pushed
    }

    /// The final chunk was pushed and the server confirmed every chunk.
    pub fn is_complete(&self) -> bool {
        self.finished && self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue_with(sizes: &[usize]) -> ChunkQueue {
        let mut q = ChunkQueue::new();
        for &n in sizes {
            q.push(vec![7u8; n], false).unwrap();
        }
        q
    }

    fn send_all(q: &mut ChunkQueue) -> Vec<u64> {
        std::iter::from_fn(|| q.next_to_send()).map(|c| c.seq).collect()
    }

    #[test]
    fn chunks_are_numbered_from_zero_and_sent_once_in_order() {
        let mut q = queue_with(&[3, 4, 5]);
        assert_eq!(send_all(&mut q), vec![0, 1, 2]);
        assert_eq!(q.next_to_send(), None);
        assert_eq!(q.push(vec![1], false).unwrap(), 3);
        assert_eq!(send_all(&mut q), vec![3]);
    }

    #[test]
    fn a_chunk_is_kept_until_acked() {
        let mut q = queue_with(&[10, 20, 30]);
        send_all(&mut q);
        assert_eq!(q.unsent_bytes(), 60);
        assert_eq!(q.ack(0).unwrap(), AckOutcome::Confirmed);
        assert_eq!(q.unsent_bytes(), 50);
        assert_eq!(q.confirmed_bytes(), 10);
        // An ack covers every earlier chunk: the server appends in order.
        assert_eq!(q.ack(2).unwrap(), AckOutcome::Confirmed);
        assert_eq!(q.unsent_bytes(), 0);
        assert_eq!(q.confirmed_bytes(), 60);
    }

    #[test]
    fn duplicate_acks_are_ignored() {
        let mut q = queue_with(&[10, 20]);
        send_all(&mut q);
        q.ack(0).unwrap();
        q.ack(1).unwrap();
        assert_eq!(q.ack(0).unwrap(), AckOutcome::Duplicate);
        assert_eq!(q.ack(1).unwrap(), AckOutcome::Duplicate);
        assert_eq!(q.confirmed_bytes(), 30);
    }

    #[test]
    fn rewind_resends_everything_unconfirmed() {
        let mut q = queue_with(&[1, 1, 1, 1]);
        send_all(&mut q);
        q.ack(1).unwrap();
        q.rewind();
        assert_eq!(send_all(&mut q), vec![2, 3]);
    }

    #[test]
    fn resume_goes_on_from_the_servers_next_seq() {
        let mut q = queue_with(&[5, 5, 5, 5, 5]);
        send_all(&mut q);
        q.ack(0).unwrap();
        // The connection dropped; the server had stored 0..3 but two acks were lost.
        q.server_expects(3).unwrap();
        assert_eq!(q.unsent_bytes(), 10);
        assert_eq!(send_all(&mut q), vec![3, 4]);
        // More audio arrives meanwhile and follows.
        q.push(vec![5; 5], true).unwrap();
        assert_eq!(send_all(&mut q), vec![5]);
        q.ack(5).unwrap();
        assert!(q.is_complete());
    }

    #[test]
    fn resume_with_nothing_stored_resends_from_zero() {
        let mut q = queue_with(&[5, 5]);
        send_all(&mut q);
        q.server_expects(0).unwrap();
        assert_eq!(send_all(&mut q), vec![0, 1]);
    }

    #[test]
    fn a_gap_refusal_rewinds_to_the_expected_seq() {
        let mut q = queue_with(&[1, 1, 1, 1]);
        assert_eq!(send_all(&mut q), vec![0, 1, 2, 3]);
        // Chunk 1 got lost; the server refuses 2 with next_seq 1.
        q.ack(0).unwrap();
        q.server_expects(1).unwrap();
        assert_eq!(send_all(&mut q), vec![1, 2, 3]);
    }

    #[test]
    fn server_answers_beyond_the_take_are_errors() {
        let mut q = queue_with(&[1, 1]);
        send_all(&mut q);
        assert_eq!(q.ack(2), Err(QueueError::AheadOfClient { server: 2, client: 2 }));
        assert_eq!(q.server_expects(3), Err(QueueError::AheadOfClient { server: 3, client: 2 }));
        q.ack(1).unwrap();
        assert_eq!(q.server_expects(0), Err(QueueError::ServerLostAudio { server: 0, confirmed: 2 }));
        // Resuming exactly at the end is fine.
        q.server_expects(2).unwrap();
        assert_eq!(q.next_to_send(), None);
    }

    #[test]
    fn the_final_chunk_completes_the_take_only_once_confirmed() {
        let mut q = queue_with(&[4]);
        q.push(vec![2; 3], true).unwrap();
        assert_eq!(q.push(vec![1], false), Err(QueueError::AfterFinal));
        let sent: Vec<_> = std::iter::from_fn(|| q.next_to_send()).collect();
        assert_eq!(sent.iter().map(|c| c.is_final).collect::<Vec<_>>(), vec![false, true]);
        assert_eq!(q.chunk_count(), 2);
        assert!(!q.is_complete());
        q.ack(1).unwrap();
        assert!(q.is_complete());
        assert_eq!(q.unsent_bytes(), 0);
    }

    #[test]
    fn an_empty_final_chunk_is_allowed() {
        let mut q = ChunkQueue::new();
        assert_eq!(q.chunk_count(), 0);
        q.push(Vec::new(), true).unwrap();
        assert_eq!(q.next_to_send().map(|c| (c.seq, c.data.len(), c.is_final)), Some((0, 0, true)));
    }
}
