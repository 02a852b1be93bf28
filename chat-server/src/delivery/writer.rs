//! The one task that writes inbox rows and deletes: it sleeps until the ledger has something
//! due, writes it as one batch, and tells the ledger how that went.
//!
//! While one batch is written, everything that falls due gathers for the next, so a busy
//! server commits many messages at once. While the database is away the writer keeps trying
//! the same batch with backoff; the senders are told at once that it is not stored yet, and
//! so are those of the messages that fall due meanwhile, within [`REFUSE_EVERY`] of a new
//! message's arrival (a message due by its ack deadline, within a backoff).

use super::ledger::{Batch, Due};
use super::Delivery;
use crate::store::Store;
use crate::telemetry::{self, DbWork};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// While the database is away, the least time between two looks for messages whose senders
/// must be told that they are not stored yet: each look walks the messages due.
const REFUSE_EVERY: Duration = Duration::from_millis(50);

/// Runs until the delivery's `writer_stop` is cancelled, then stores everything pending.
pub(super) async fn run(delivery: Arc<Delivery>, store: Store) {
    loop {
        let due = delivery.with_ledger(|ledger| ledger.next_due(Instant::now()));
        let until = match due {
            Due::Now => None,
            Due::At(at) => Some(tokio::time::Instant::from_std(at)),
            Due::Idle => Some(tokio::time::Instant::now() + Duration::from_secs(3600)),
        };
        if let Some(until) = until {
            tokio::select! {
                () = tokio::time::sleep_until(until) => {}
                () = delivery.wake.notified() => {}
                () = delivery.writer_stop.cancelled() => break,
            }
            continue;
        }
        if delivery.writer_stop.is_cancelled() {
            break;
        }
        let batch = delivery.with_ledger(|ledger| ledger.take_batch(Instant::now()));
        if let Some(batch) = batch {
            write(&delivery, &store, batch).await;
        }
    }
    // Shutting down: from here on new messages are refused, and everything waiting is due.
    let n_pending = delivery.with_ledger(|ledger| {
        ledger.shutdown();
        ledger.n_pending()
    });
    tracing::info!(n_pending, "delivery writer storing what is pending");
    let mut n_batches = 0;
    while let Some(batch) = delivery.with_ledger(|ledger| ledger.take_batch(Instant::now())) {
        write(&delivery, &store, batch).await;
        n_batches += 1;
    }
    tracing::info!(n_batches, "delivery writer flushed and stopped");
}

/// Writes `batch`, retrying with backoff until the database takes it.
async fn write(delivery: &Delivery, store: &Store, batch: Batch) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let started = Instant::now();
        match store.apply_inbox_batch(&batch.rows, &batch.deletes).await {
            Ok(()) => {
                let (n_rows, n_deletes) = (batch.rows.len(), batch.deletes.len());
                telemetry::batch_committed(n_rows, n_deletes, started.elapsed());
                break;
            }
            Err(err) => {
                telemetry::database_error(DbWork::InboxBatch);
                tracing::warn!(%err, n_rows = batch.rows.len(), n_deletes = batch.deletes.len(),
                    "storing a batch of messages failed; retrying in {backoff:?}");
                let actions = delivery.with_ledger(|ledger| ledger.failed(batch.id));
                delivery.carry_out(actions);
                wait_out(delivery, backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
    let actions = delivery.with_ledger(|ledger| ledger.committed(batch.id));
    delivery.carry_out(actions);
}

/// Waits `backoff` before the next attempt, telling the senders of what falls due meanwhile
/// that it is not stored yet: at once, and again after each new message, at most once every
/// [`REFUSE_EVERY`].
async fn wait_out(delivery: &Delivery, backoff: Duration) {
    let until = tokio::time::Instant::now() + backoff;
    loop {
        let actions = delivery.with_ledger(|ledger| ledger.refuse_due(Instant::now()));
        delivery.carry_out(actions);
        let next_look = (tokio::time::Instant::now() + REFUSE_EVERY).min(until);
        let new_message = async {
            delivery.wake.notified().await;
            tokio::time::sleep_until(next_look).await;
        };
        tokio::select! {
            () = tokio::time::sleep_until(until) => return,
            () = new_message => {}
        }
    }
}
