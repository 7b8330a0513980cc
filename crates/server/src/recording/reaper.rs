//! The reaper: independent tasks, so that none waits behind another.
//!
//! - the **heartbeat** tells the database that this instance still holds its
//!   live takes and sockets (and how far each take got); it never waits
//!   behind a finalize, an upload or a checkpoint, so a slow pass elsewhere
//!   cannot make another instance take this one's live takes as orphans;
//! - **expiry** finalizes this instance's abandoned takes as `interrupted`;
//! - **orphans** finalizes takes whose holder went silent (killed, crashed);
//! - **retries** re-runs failed finalizes (after a few failures storing the
//!   bytes as received, without the container fix) and pending uploads,
//!   with a backoff kept in the database;
//! - **housekeeping** checkpoints SQLite, forgets stale sockets and removes
//!   spool files nobody needs any more.
//!
//! Each finalize or upload runs in its own task, a few at a time, so one slow
//! take delays nobody else's.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, watch};
use tracing::Instrument;
use uuid::Uuid;

use super::finalize::{self, Take};
use super::spool::{self, Spool};
use super::{Recordings, StoredStatus};
use crate::db::takes::Stale;

/// Finalizes and uploads the reaper runs at once.
const CONCURRENT_JOBS: usize = 4;
/// After this many failed attempts a take is stored as received.
const ATTEMPTS_BEFORE_AS_RECEIVED: i32 = 3;
/// How long a stale take whose spool is on another disk is left alone.
const NOT_HERE_DEFER: Duration = Duration::from_secs(30);
/// How often spool files without a live or pending take are looked for.
const SPOOL_SWEEP_EVERY: Duration = Duration::from_secs(600);
/// A spool file is only removed when it is older than this (a take being
/// opened right now has its files before its row is visible).
const SPOOL_MIN_AGE: Duration = Duration::from_secs(3600);

/// The pass interval for a grace period: a fifth of it, from 0.2 s to 5 s.
pub fn tick_for(grace: Duration) -> Duration {
    (grace / 5).clamp(Duration::from_millis(200), Duration::from_secs(5))
}

impl Recordings {
    /// The pass interval of the reaper's tasks (the heartbeat's too).
    pub fn reaper_tick(&self) -> Duration {
        tick_for(self.limits.recording_grace)
    }

    /// How long a holder must have missed its heartbeat before others
    /// count it gone: three ticks (its own lease runs out before that).
    pub fn holder_silence(&self) -> Duration {
        self.reaper_tick() * 3
    }

    /// Sockets seen within this long count against the per-user limit.
    pub fn connection_freshness(&self) -> Duration {
        self.holder_silence() + Duration::from_secs(30)
    }

    /// Runs every reaper task until `shutdown` says so.
    pub async fn run_reaper(self: Arc<Self>, shutdown: watch::Receiver<bool>) {
        let tick = self.reaper_tick();
        let jobs = Arc::new(Semaphore::new(CONCURRENT_JOBS));
        let tasks = [
            spawn_every("heartbeat", tick, shutdown.clone(), self.clone(), |r| async move { r.heartbeat().await }),
            spawn_every("expiry", tick, shutdown.clone(), self.clone(), {
                let jobs = jobs.clone();
                move |r| {
                    let jobs = jobs.clone();
                    async move { r.expire_idle(&jobs).await }
                }
            }),
            spawn_every("orphans", tick, shutdown.clone(), self.clone(), {
                let jobs = jobs.clone();
                move |r| {
                    let jobs = jobs.clone();
                    async move { r.reap_orphans(&jobs).await }
                }
            }),
            spawn_every("retries", tick, shutdown.clone(), self.clone(), {
                let jobs = jobs.clone();
                move |r| {
                    let jobs = jobs.clone();
                    async move { r.retry_due(&jobs).await }
                }
            }),
            spawn_every("housekeeping", tick.max(Duration::from_secs(1)), shutdown.clone(), self.clone(), {
                let last_sweep = Arc::new(std::sync::Mutex::new(None::<Instant>));
                move |r| {
                    let last_sweep = last_sweep.clone();
                    async move { r.housekeeping(&last_sweep).await }
                }
            }),
        ];
        for task in tasks {
            let _ = task.await;
        }
    }

    /// One heartbeat: refreshes this instance's rows, then reports how far
    /// its live takes got. After a lapse (the database was unreachable for a
    /// while) it first drops any take another instance claimed meanwhile.
    pub async fn heartbeat(&self) {
        let sent = Instant::now();
        let lapsed = !self.lease.is_fresh();
        match tokio::time::timeout(self.reaper_tick() * 4, self.db.heartbeat(self.instance_id)).await {
            Ok(Ok(_)) => {
                if lapsed && !self.revalidate().await {
                    return;
                }
                self.lease.renew(sent);
            }
            Ok(Err(e)) => {
                crate::telemetry::db_error();
                return tracing::warn!(error = %e, "heartbeat failed");
            }
            Err(_) => return tracing::warn!("heartbeat timed out"),
        }
        metrics::gauge!(crate::telemetry::LIVE_TAKES).set(self.live_count() as f64);
        self.report_progress().await;
    }

    /// Drops live takes that the store no longer says are ours; `false` if
    /// the store could not say.
    async fn revalidate(&self) -> bool {
        let held = match self.db.held_by(self.instance_id).await {
            Ok(ids) => ids.into_iter().collect::<std::collections::HashSet<Uuid>>(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot check which takes are still ours");
                return false;
            }
        };
        let ours: Vec<_> = self.live.lock().expect("live map").values().cloned().collect();
        for take in ours {
            let mut live = take.live.lock().await;
            if !live.closed && !held.contains(&live.id) {
                self.drop_stale(&mut live);
            }
        }
        tracing::info!(takes = held.len(), "heartbeat back after a lapse; takes revalidated");
        true
    }

    async fn report_progress(&self) {
        let takes: Vec<_> = self.live.lock().expect("live map").values().cloned().collect();
        let mut changed = Vec::new();
        for held in &takes {
            // A take busy with a chunk is reported on the next beat.
            if let Ok(live) = held.live.try_lock()
                && !live.closed
                && (live.received, live.attached > 0) != live.reported
            {
                changed.push((live.id, live.received, live.attached > 0));
            }
        }
        if changed.is_empty() {
            return;
        }
        match self.db.record_progress(&changed).await {
            Ok(()) => {
                for held in &takes {
                    if let Ok(mut live) = held.live.try_lock()
                        && let Some((_, bytes, connected)) = changed.iter().find(|(id, ..)| *id == live.id)
                    {
                        live.reported = (*bytes, *connected);
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot record the progress of live takes"),
        }
    }

    /// Finalizes this instance's takes that nobody used for too long.
    async fn expire_idle(self: Arc<Self>, jobs: &Arc<Semaphore>) {
        let now = Instant::now();
        let candidates: Vec<_> = self.live.lock().expect("live map").values().cloned().collect();
        for held in candidates {
            let expired = match held.live.try_lock() {
                Ok(live) if !live.closed => {
                    let idle = now.duration_since(live.last_activity);
                    let limit = if live.attached == 0 {
                        self.limits.recording_grace
                    } else {
                        self.limits.recording_idle_timeout
                    };
                    idle >= limit
                }
                _ => false,
            };
            if !expired {
                continue;
            }
            let Ok(permit) = jobs.clone().try_acquire_owned() else { return };
            let this = self.clone();
            tokio::spawn(
                async move {
                    let _permit = permit;
                    let mut live = held.live.lock().await;
                    if live.closed {
                        return;
                    }
                    tracing::info!(recording_id = %live.id, "finalizing an abandoned take as interrupted");
                    if let Err(e) = this.close_and_finalize(held.user_id, &mut live, StoredStatus::Interrupted).await {
                        tracing::warn!(recording_id = %live.id, error = %e, "could not finalize abandoned take");
                    }
                }
                .in_current_span(),
            );
        }
    }

    /// Takes whose holder went silent (killed, crashed, or this process
    /// before a restart): live ones nobody resumed within the grace period,
    /// and ones their holder was saving once its lease ran out (their
    /// client has stopped; waiting the grace period too would keep its
    /// retried stop answering "being saved" for minutes).
    async fn reap_orphans(self: Arc<Self>, jobs: &Arc<Semaphore>) {
        let ago = |d: Duration| crate::db::now() - chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
        let stale =
            Stale { recording_before: ago(self.limits.recording_grace), finalizing_before: ago(self.holder_silence()) };
        let rows = match self.db.stale_recordings(stale).await {
            Ok(rows) => rows,
            Err(e) => return tracing::warn!(error = %e, "cannot list stale recordings"),
        };
        for row in rows {
            if self.get_live(row.id).is_some() || self.finalizing.lock().expect("finalizing set").contains(&row.id) {
                continue;
            }
            let paths = spool::SpoolPaths::new(&self.spool_dir, row.id);
            if !paths.exists() {
                // Held on another machine's disk: that instance's reaper will see it.
                let _ = self.db.defer(row.id, NOT_HERE_DEFER).await;
                continue;
            }
            let Ok(permit) = jobs.clone().try_acquire_owned() else { return };
            // The spool's lock, held until the take is saved: a holder that is
            // slow rather than dead still holds it (it keeps it while saving),
            // and two instances never fix the same spool at once. Recovery
            // also cuts a torn tail (a crash between a chunk and its index entry).
            let dir = self.spool_dir.clone();
            let id = row.id;
            let lock = match tokio::task::spawn_blocking(move || Spool::recover(&dir, id)).await {
                Ok(Ok(spool)) => spool,
                Ok(Err(spool::OpenError::Locked)) => continue, // its holder is still at it
                Ok(Err(e)) => {
                    tracing::warn!(recording_id = %row.id, error = ?e, "cannot recover spool");
                    continue;
                }
                Err(e) => {
                    tracing::warn!(recording_id = %row.id, error = %e, "cannot recover spool");
                    continue;
                }
            };
            if !self.db.claim_orphan(row.id, self.instance_id, stale).await.unwrap_or(false) {
                continue; // resumed, or claimed by another instance, meanwhile
            }
            let this = self.clone();
            tokio::spawn(
                async move {
                    let _permit = permit;
                    let _lock = lock;
                    // A stop that failed half-way keeps its intended outcome.
                    let outcome = row.outcome.as_deref().map(StoredStatus::parse).unwrap_or(StoredStatus::Interrupted);
                    tracing::info!(recording_id = %row.id, outcome = outcome.as_str(), "finalizing an orphaned take");
                    let take = Take { id: row.id, user_id: row.user_id, mime_type: row.mime_type.clone(), paths };
                    let _ = this.finalize_claimed(&take, outcome, false).await;
                }
                .in_current_span(),
            );
        }
    }

    /// Failed finalizes of this instance and pending uploads that are due.
    async fn retry_due(self: Arc<Self>, jobs: &Arc<Semaphore>) {
        let rows = match self.db.due_retries(self.instance_id).await {
            Ok(rows) => rows,
            Err(e) => return tracing::warn!(error = %e, "cannot list due retries"),
        };
        for row in rows {
            if self.finalizing.lock().expect("finalizing set").contains(&row.id) {
                continue;
            }
            let paths = spool::SpoolPaths::new(&self.spool_dir, row.id);
            if !paths.data.exists() && !paths.fixed.exists() {
                continue; // a pending take whose spool is on another instance's disk
            }
            let Ok(permit) = jobs.clone().try_acquire_owned() else { return };
            if !self.db.claim_attempt(&row, self.instance_id).await.unwrap_or(false) {
                continue;
            }
            let this = self.clone();
            tokio::spawn(async move {
                let _permit = permit;
                match row.status() {
                    StoredStatus::Finalizing => {
                        let outcome = row.outcome.as_deref().map(StoredStatus::parse).unwrap_or(StoredStatus::Ready);
                        let as_received = row.attempts + 1 >= ATTEMPTS_BEFORE_AS_RECEIVED;
                        tracing::info!(recording_id = %row.id, attempt = row.attempts + 1, as_received, "retrying a finalize");
                        let take = Take { id: row.id, user_id: row.user_id, mime_type: row.mime_type.clone(), paths };
                        let Some(_guard) = this.start_finalizing(row.id) else { return };
                        if let Err(e) = finalize::finalize(&this.db, &this.storage, &take, outcome, as_received).await {
                            tracing::warn!(recording_id = %row.id, error = %e, "finalize retry failed");
                            let _ = this.db.attempt_failed(row.id, &e.to_string()).await;
                        }
                    }
                    StoredStatus::Pending => {
                        let Some(_guard) = this.start_finalizing(row.id) else { return };
                        if let Err(e) = finalize::retry_upload(&this.db, &this.storage, &row, &paths).await {
                            tracing::warn!(recording_id = %row.id, attempt = row.attempts + 1, error = %e, "upload still failing");
                            let _ = this.db.attempt_failed(row.id, &e.to_string()).await;
                        }
                    }
                    _ => {}
                }
            }.in_current_span());
        }
    }

    async fn housekeeping(&self, last_sweep: &std::sync::Mutex<Option<Instant>>) {
        if let Err(e) = self.db.checkpoint().await {
            tracing::warn!(error = %e, "database checkpoint failed");
        }
        let stale =
            crate::db::now() - chrono::Duration::from_std(self.connection_freshness()).unwrap_or(chrono::Duration::MAX);
        if let Err(e) = self.db.forget_stale_connections(stale).await {
            tracing::warn!(error = %e, "cannot forget stale connections");
        }
        match self.db.count_pending_uploads().await {
            Ok(n) => metrics::gauge!(crate::telemetry::PENDING_UPLOADS).set(n as f64),
            Err(e) => tracing::warn!(error = %e, "cannot count pending uploads"),
        }
        let due = last_sweep.lock().expect("sweep time").is_none_or(|at| at.elapsed() >= SPOOL_SWEEP_EVERY);
        if due {
            *last_sweep.lock().expect("sweep time") = Some(Instant::now());
            self.sweep_spool().await;
        }
    }

    /// Removes spool files of takes that are saved or gone (a crash between
    /// the final commit and the removal, or files of a refused start).
    async fn sweep_spool(&self) {
        let dir = self.spool_dir.clone();
        let candidates =
            tokio::task::spawn_blocking(move || spool::old_spool_ids(&dir, SPOOL_MIN_AGE)).await.unwrap_or_default();
        for id in candidates {
            if self.get_live(id).is_some() {
                continue;
            }
            match self.db.record(id).await {
                Ok(Some(row))
                    if matches!(
                        row.status(),
                        StoredStatus::Recording | StoredStatus::Finalizing | StoredStatus::Pending
                    ) => {}
                Ok(_) => {
                    tracing::info!(recording_id = %id, "removing spool files nobody needs");
                    spool::SpoolPaths::new(&self.spool_dir, id).remove();
                }
                Err(e) => return tracing::warn!(error = %e, "cannot check spool files"),
            }
        }
    }
}

/// Runs `pass` every `every` until shutdown; a pass that overruns delays
/// the next one instead of piling up.
fn spawn_every<F, Fut>(
    task: &'static str,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
    recordings: Arc<Recordings>,
    pass: F,
) -> tokio::task::JoinHandle<()>
where
    F: Fn(Arc<Recordings>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    tokio::spawn(
        async move {
            let mut interval = tokio::time::interval(every);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let stopped = tokio::select! {
                    _ = shutdown.wait_for(|stopped| *stopped) => true,
                    _ = interval.tick() => false,
                };
                if stopped {
                    break;
                }
                let started = Instant::now();
                pass(recordings.clone()).await;
                metrics::histogram!(crate::telemetry::REAPER_PASS_SECONDS, "task" => task)
                    .record(started.elapsed().as_secs_f64());
            }
        }
        .in_current_span(),
    )
}
