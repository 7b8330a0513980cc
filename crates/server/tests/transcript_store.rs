//! Transcripts in the store, on both databases, without a worker: how jobs
//! are queued (only while transcription is on), claimed by one instance at a
//! time, taken over when a claim lapses, retried, given up; and full-text
//! search: ranking, hostile queries, and never another user's transcripts.

mod common;

use std::time::Duration;

use audiobook_client::wire::{TranscriptSegment, TranscriptWord};
use audiobook_server::db::library::RecordQuery;
use audiobook_server::db::transcripts::{QueueOutcome, StoredTranscript};
use audiobook_server::db::{Db, FinishedRecording, NewRecording, StoredStatus};
use audiobook_server::transcription::text::{find_match, index_words, search_terms};
use common::{Backend, database};
use uuid::Uuid;

async fn user(db: &Db, name: &str) -> Uuid {
    let mut hash = [0u8; 32];
    hash[..16].copy_from_slice(Uuid::new_v4().as_bytes());
    db.create_user(name, &hash).await.unwrap().id
}

/// A take of `user_id` taken to `ready` the way finalizing does.
async fn ready_record(db: &Db, user_id: Uuid, name: &str) -> Uuid {
    let (id, instance) = (Uuid::new_v4(), Uuid::new_v4());
    let new = NewRecording { id, user_id, name: name.into(), mime_type: "audio/webm".into(), owner_instance: instance };
    db.insert_recording(&new).await.unwrap();
    assert!(db.claim_for_finalize(id, instance, StoredStatus::Ready).await.unwrap());
    let finished = FinishedRecording {
        status: StoredStatus::Ready,
        outcome: None,
        storage_key: format!("recordings/{user_id}/{id}.webm"),
        mime_type: "audio/webm".into(),
        size_bytes: 1000,
        duration_ms: 60_000,
        peaks: None,
    };
    db.finish_recording(id, &finished).await.unwrap().unwrap();
    // Not created in the same millisecond: the newest-first order is exact.
    tokio::time::sleep(Duration::from_millis(3)).await;
    id
}

/// `text` as a transcript, one word every 400 ms from `start_ms`.
fn stored(text: &str, start_ms: u64) -> StoredTranscript {
    let words: Vec<TranscriptWord> = text
        .split_whitespace()
        .enumerate()
        .map(|(i, w)| TranscriptWord {
            start_ms: start_ms + 400 * i as u64,
            end_ms: start_ms + 400 * i as u64 + 300,
            text: w.into(),
            probability: 0.9,
        })
        .collect();
    let segments = vec![TranscriptSegment {
        start_ms,
        end_ms: words.last().map_or(start_ms, |w| w.end_ms),
        text: text.into(),
        words,
    }];
    let (text, word_ms) = index_words(&segments);
    StoredTranscript {
        model: "test".into(),
        language: Some("en".into()),
        segments_json: serde_json::json!({"segments": segments.len()}).to_string(),
        text,
        word_ms,
    }
}

/// Runs the queued job of `record` to the end with `text` as its result.
async fn transcribe(db: &Db, record: Uuid, text: &str) {
    let instance = Uuid::new_v4();
    let due = db.due_transcripts(100).await.unwrap();
    let job = due.into_iter().find(|j| j.record_id == record).expect("the job is due");
    assert!(db.claim_transcript(&job, instance, Duration::from_secs(60)).await.unwrap());
    assert!(db.finish_transcript(record, instance, &stored(text, 1000)).await.unwrap());
}

async fn search(db: &Db, user_id: Uuid, q: &str) -> Vec<Uuid> {
    let query = RecordQuery { name_contains: Some(q.into()), ..RecordQuery::default() };
    db.find_records(user_id, &query).await.unwrap().into_iter().map(|r| r.id).collect()
}

async fn jobs_are_queued_claimed_retried_and_given_up(backend: Backend) {
    let Some(test) = database(backend).await else { return };
    let db = &test.db;
    let me = user(db, "Ann").await;

    // Off (or never on): a ready take gets no job.
    let before = ready_record(db, me, "Before").await;
    assert!(db.transcript(before).await.unwrap().is_none());
    db.set_transcripts_queued(true).await.unwrap();
    let id = ready_record(db, me, "Talk").await;
    let row = db.transcript(id).await.unwrap().expect("queued by the trigger");
    assert_eq!((row.status.as_str(), row.attempts, row.user_id), ("queued", 0, me));
    let listed = db.record(id).await.unwrap().unwrap();
    assert_eq!(listed.transcript_status.as_deref(), Some("queued"));
    // The one made while off can be asked for.
    assert_eq!(db.queue_transcript(before).await.unwrap(), QueueOutcome::Queued);
    assert_eq!(db.queue_transcript(before).await.unwrap(), QueueOutcome::Busy);
    assert_eq!(db.queue_transcript(Uuid::new_v4()).await.unwrap(), QueueOutcome::NotReady);
    // Renaming does not queue anything again.
    db.rename_record(id, "Renamed").await.unwrap();
    assert_eq!(db.transcript(id).await.unwrap().unwrap().attempts, 0);

    // One claim wins.
    let job = db.due_transcripts(10).await.unwrap().into_iter().find(|j| j.record_id == id).unwrap();
    assert_eq!((job.duration_ms, job.storage_key.as_deref().is_some()), (60_000, true));
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let lease = Duration::from_millis(300);
    assert!(db.claim_transcript(&job, a, lease).await.unwrap());
    assert!(!db.claim_transcript(&job, b, lease).await.unwrap(), "claimed once");
    assert!(!db.due_transcripts(10).await.unwrap().iter().any(|j| j.record_id == id), "not due while leased");
    assert!(db.renew_transcript(id, a, lease, Some(0.5)).await.unwrap());
    assert!(!db.renew_transcript(id, b, lease, None).await.unwrap(), "only the claimer renews");
    assert_eq!(db.record(id).await.unwrap().unwrap().transcript_progress, Some(0.5));

    // A lapsed claim (its instance died) is due again and taken over.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let lapsed = db.due_transcripts(10).await.unwrap().into_iter().find(|j| j.record_id == id).unwrap();
    assert_eq!((lapsed.status.as_str(), lapsed.attempts), ("running", 1));
    assert!(db.claim_transcript(&lapsed, b, Duration::from_secs(60)).await.unwrap());
    assert!(!db.renew_transcript(id, a, lease, None).await.unwrap(), "the old claimer lost it");
    assert!(!db.finish_transcript(id, a, &stored("late", 0)).await.unwrap(), "and cannot store a result");

    // A failed attempt is queued again after the backoff, then given up.
    assert!(db.transcript_attempt_failed(id, b, "worker died", Some(Duration::from_millis(200))).await.unwrap());
    let row = db.transcript(id).await.unwrap().unwrap();
    assert_eq!((row.status.as_str(), row.attempts, row.last_error.as_deref()), ("queued", 2, Some("worker died")));
    assert!(!db.due_transcripts(10).await.unwrap().iter().any(|j| j.record_id == id), "not before its due time");
    tokio::time::sleep(Duration::from_millis(250)).await;
    let job = db.due_transcripts(10).await.unwrap().into_iter().find(|j| j.record_id == id).unwrap();
    assert!(db.claim_transcript(&job, a, Duration::from_secs(60)).await.unwrap());
    assert!(db.transcript_attempt_failed(id, a, &"x".repeat(10_000), None).await.unwrap());
    let row = db.transcript(id).await.unwrap().unwrap();
    assert_eq!((row.status.as_str(), row.last_error.map(|e| e.len())), ("failed", Some(500)));
    // The owner asks again: attempts start over.
    assert_eq!(db.queue_transcript(id).await.unwrap(), QueueOutcome::Queued);
    assert_eq!(db.transcript(id).await.unwrap().unwrap().attempts, 0);

    // Shutting down hands a job back without counting the attempt.
    let job = db.due_transcripts(10).await.unwrap().into_iter().find(|j| j.record_id == id).unwrap();
    assert!(db.claim_transcript(&job, a, Duration::from_secs(60)).await.unwrap());
    db.release_transcript(id, a).await.unwrap();
    let row = db.transcript(id).await.unwrap().unwrap();
    assert_eq!((row.status.as_str(), row.attempts), ("queued", 0));

    // Lapsed too often: failed without another try.
    let job = db.due_transcripts(10).await.unwrap().into_iter().find(|j| j.record_id == id).unwrap();
    assert!(db.claim_transcript(&job, a, Duration::from_millis(1)).await.unwrap());
    tokio::time::sleep(Duration::from_millis(20)).await;
    let job = db.due_transcripts(10).await.unwrap().into_iter().find(|j| j.record_id == id).unwrap();
    assert!(db.give_up_transcript(&job, "interrupted").await.unwrap());
    assert!(!db.give_up_transcript(&job, "twice").await.unwrap());
    assert_eq!(db.transcript(id).await.unwrap().unwrap().status, "failed");

    // Deleting the recording deletes its transcript; `off` stops queueing.
    transcribe(db, before, "kept until deleted").await;
    assert_eq!(search(db, me, "deleted").await, vec![before]);
    assert_eq!(db.delete_saved_record(before).await.unwrap(), audiobook_server::db::library::DeleteOutcome::Deleted);
    assert!(db.transcript(before).await.unwrap().is_none());
    assert!(search(db, me, "deleted").await.is_empty());
    db.set_transcripts_queued(false).await.unwrap();
    let after = ready_record(db, me, "After").await;
    assert!(db.transcript(after).await.unwrap().is_none());
    test.drop().await;
}

async fn search_is_ranked_safe_and_private(backend: Backend) {
    let Some(test) = database(backend).await else { return };
    let db = &test.db;
    db.set_transcripts_queued(true).await.unwrap();
    let me = user(db, "Ann").await;
    let other = user(db, "Bob").await;

    let once = ready_record(db, me, "Once").await;
    transcribe(db, once, "we talked about the budget and many other things for a long time today").await;
    let often = ready_record(db, me, "Often").await;
    transcribe(db, often, "budget budget the budget was the budget topic").await;
    let named = ready_record(db, me, "Budget meeting").await;
    transcribe(db, named, "nothing about money here").await;
    let quirky = ready_record(db, me, "Quirky").await;
    transcribe(db, quirky, "O'Brien said \"NEAR(x)\" costs 50% * 2 -- isn't that café's price? AND/OR: NOT").await;
    let theirs = ready_record(db, other, "Theirs").await;
    transcribe(db, theirs, "budget budget budget budget budget secret budget").await;
    let pending = ready_record(db, me, "Pending").await; // queued, no text yet

    // Name matches first, then by rank (more mentions first), never another user's.
    assert_eq!(search(db, me, "budget").await, vec![named, often, once]);
    assert_eq!(search(db, other, "budget").await, vec![theirs]);
    assert!(search(db, me, "secret").await.is_empty(), "another user's transcript is never searched");
    assert!(db.transcript_texts(me, &[theirs]).await.unwrap().is_empty(), "nor read");
    assert!(!search(db, me, "pending").await.is_empty(), "names still match");
    let _ = pending;

    // Every term must occur; the last one is a prefix.
    assert_eq!(search(db, me, "long budg").await, vec![once]);
    assert!(search(db, me, "budget money").await.is_empty());
    assert_eq!(search(db, me, "TALKED").await, vec![once], "case does not matter");

    // Query syntax of either index is plain text here.
    assert_eq!(search(db, me, "o'brien").await, vec![quirky]);
    assert_eq!(search(db, me, "\"NEAR(x)\"").await, vec![quirky]);
    assert_eq!(search(db, me, "isn't").await, vec![quirky]);
    assert_eq!(search(db, me, "café").await, vec![quirky]);
    assert_eq!(search(db, me, "AND/OR: NOT").await, vec![quirky]);
    for hostile in
        ["'", "\"", "*", "-", "(", ")", ":*", "&|!", "%_%", "\\", "NEAR(", "a\" OR \"b", "' OR 1=1 --", "🎙️", "$1"]
    {
        let found = search(db, me, hostile).await;
        assert!(found.iter().all(|id| [once, often, named, quirky, pending].contains(id)), "{hostile:?}: {found:?}");
    }
    // `50%` is a name-free search for the term 50: found by the transcript.
    assert_eq!(search(db, me, "50%").await, vec![quirky]);

    // Where it matched: the time of the word, and the words marked.
    let texts = db.transcript_texts(me, &[once, often, quirky]).await.unwrap();
    let once_text = texts.iter().find(|t| t.record_id == once).unwrap();
    let m = find_match(&once_text.text, &once_text.word_ms, &search_terms("budget")).unwrap();
    assert_eq!(m.at_ms, 1000 + 400 * 4, "the fifth word");
    assert_eq!(m.snippet.iter().filter(|p| p.hit).count(), 1);

    // Paged by rank.
    let query = RecordQuery { name_contains: Some("budget".into()), limit: Some(2), offset: 1, ..Default::default() };
    let page: Vec<Uuid> = db.find_records(me, &query).await.unwrap().into_iter().map(|r| r.id).collect();
    assert_eq!(page, vec![often, once]);
    test.drop().await;
}

both_backends!(transcript_jobs, jobs_are_queued_claimed_retried_and_given_up);
both_backends!(transcript_search, search_is_ranked_safe_and_private);
