//! The store's test-suite, run against SQLite and against a real PostgreSQL
//! server (a fresh database per test) when the test command provides one.

use super::takes::Stale;
use super::*;
use crate::testing::{TestDb, postgres_or_skip};

async fn suite(db: &Db) {
    db.ping().await.unwrap();
    db.checkpoint().await.unwrap();

    // Users: created, found by id and by token hash; names stored verbatim.
    let evil = "Robert'); DROP TABLE";
    let u = db.create_user(evil, &[1; 32]).await.unwrap();
    let found = db.user(u.id).await.unwrap().unwrap();
    assert_eq!(found.name, evil);
    assert_eq!(found.created_at, u.created_at);
    let (by_hash, hash) = db.user_by_token_hash(&[1; 32]).await.unwrap().unwrap();
    assert_eq!((by_hash.id, hash), (u.id, vec![1; 32]));
    assert!(db.user_by_token_hash(&[2; 32]).await.unwrap().is_none());
    assert!(db.user(Uuid::new_v4()).await.unwrap().is_none());
    // The token hash is unique.
    assert!(db.create_user("Twin", &[1; 32]).await.is_err());
    // 20 characters (multi-byte) fit, 21 do not: the database checks too.
    db.create_user(&"é".repeat(20), &[3; 32]).await.unwrap();
    assert!(db.create_user(&"é".repeat(21), &[4; 32]).await.is_err());

    // Records: live takes are hidden, saved ones listed newest first.
    let instance = Uuid::new_v4();
    let mut ids = Vec::new();
    for i in 0..3 {
        let id = Uuid::new_v4();
        db.insert_recording(&NewRecording {
            id,
            user_id: u.id,
            name: format!("Take {i}"),
            mime_type: "audio/webm".into(),
            owner_instance: instance,
        })
        .await
        .unwrap();
        ids.push(id);
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(db.count_records(u.id).await.unwrap(), 3);
    let live = db.records_of(u.id).await.unwrap();
    assert!(live.iter().all(|r| r.status() == StoredStatus::Recording), "live takes are listed as such");
    assert_eq!(live.len(), 3);
    // Their progress, reported by the holder's heartbeat, is what lists show.
    db.record_progress(&[(ids[1], 12_345, true)]).await.unwrap();
    let row = db.record(ids[1]).await.unwrap().unwrap();
    assert_eq!((row.size_bytes, row.client_connected), (12_345, Some(true)));

    assert!(
        !db.claim_for_finalize(ids[0], Uuid::new_v4(), StoredStatus::Ready).await.unwrap(),
        "only its holder claims a take"
    );
    assert!(db.claim_for_finalize(ids[0], instance, StoredStatus::Ready).await.unwrap());
    assert!(!db.claim_for_finalize(ids[0], instance, StoredStatus::Ready).await.unwrap(), "a take is claimed once");
    assert_eq!(
        db.record(ids[0]).await.unwrap().unwrap().outcome.as_deref(),
        Some("ready"),
        "the intended outcome is kept"
    );
    let finished = FinishedRecording {
        status: StoredStatus::Ready,
        outcome: None,
        storage_key: "k0".into(),
        mime_type: "audio/webm".into(),
        size_bytes: 1234,
        duration_ms: 5678,
        peaks: Some(vec![3, 200, 7]),
    };
    let row = db.finish_recording(ids[0], &finished).await.unwrap().unwrap();
    assert_eq!((row.status(), row.size_bytes, row.duration_ms), (StoredStatus::Ready, 1234, 5678));
    assert_eq!(db.record_peaks(ids[0]).await.unwrap(), vec![3, 200, 7]);
    assert_eq!(db.record_peaks(ids[1]).await.unwrap(), Vec::<u8>::new());
    assert!(db.claim_for_finalize(ids[2], instance, StoredStatus::Ready).await.unwrap());
    db.finish_recording(
        ids[2],
        &FinishedRecording {
            status: StoredStatus::Pending,
            outcome: Some(StoredStatus::Interrupted),
            ..finished.clone()
        },
    )
    .await
    .unwrap();
    let listed: Vec<Uuid> = db.records_of(u.id).await.unwrap().iter().map(|r| r.id).collect();
    assert_eq!(listed, vec![ids[2], ids[1], ids[0]], "newest first, the live take too");
    let pending = db.pending_uploads().await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].outcome.as_deref(), Some("interrupted"));

    // Liveness: the heartbeat touches only this instance's live takes.
    assert_eq!(db.heartbeat(instance).await.unwrap(), 1);
    assert_eq!(db.heartbeat(Uuid::new_v4()).await.unwrap(), 0);
    let stale = db.stale_recordings(Stale::before(now() + chrono::Duration::seconds(1))).await.unwrap();
    assert_eq!(stale.iter().map(|r| r.id).collect::<Vec<_>>(), vec![ids[1]]);
    assert!(db.stale_recordings(Stale::before(now() - chrono::Duration::seconds(60))).await.unwrap().is_empty());
    let other = Uuid::new_v4();
    assert!(db.take_over(ids[1], other).await.unwrap());
    assert_eq!(db.record(ids[1]).await.unwrap().unwrap().owner_instance, Some(other));
    assert!(!db.take_over(ids[0], other).await.unwrap(), "a saved take cannot be taken over");

    // Orphans are claimed only while still stale, once.
    let finder = Uuid::new_v4();
    assert!(
        !db.claim_orphan(ids[1], finder, Stale::before(now() - chrono::Duration::seconds(60))).await.unwrap(),
        "not stale"
    );
    assert!(db.claim_orphan(ids[1], finder, Stale::before(now() + chrono::Duration::seconds(1))).await.unwrap());
    let claimed = db.record(ids[1]).await.unwrap().unwrap();
    assert_eq!((claimed.status(), claimed.owner_instance), (StoredStatus::Finalizing, Some(finder)));
    assert_eq!(claimed.outcome.as_deref(), Some("interrupted"));
    assert!(
        !db.claim_orphan(ids[1], other, Stale::before(now() - chrono::Duration::seconds(60))).await.unwrap(),
        "freshly claimed"
    );
    assert_eq!(db.heartbeat(finder).await.unwrap(), 1, "a take being finalized stays fresh");

    // Settings: the first value wins, for every instance.
    assert_eq!(db.setting_or_insert("k", "first").await.unwrap(), "first");
    assert_eq!(db.setting_or_insert("k", "second").await.unwrap(), "first");
}

#[tokio::test]
async fn sqlite_store_passes_the_suite() {
    let db = TestDb::sqlite().await;
    suite(&db.db).await;
}

#[tokio::test]
async fn postgres_store_passes_the_suite() {
    let Some(db) = postgres_or_skip().await else { return };
    suite(&db.db).await;
    db.drop().await;
}
