//! Group commit: concurrent writes of one kind share a transaction.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{Semaphore, mpsc, oneshot};

use super::StoreError;

type Reply<R> = oneshot::Sender<Result<R, StoreError>>;

/// Writes that arrive while transactions are committing wait and go together in the next one:
/// under load, many requests share one commit (and its wait for the disk) instead of queueing
/// for a commit each; a write that arrives while fewer than `concurrency` transactions are
/// open goes at once.
pub struct Batcher<T, R> {
    queue: mpsc::Sender<Queued<T, R>>,
}

/// A write waiting for its transaction, and since when.
struct Queued<T, R> {
    item: T,
    reply: Reply<R>,
    at: Instant,
}

/// The last failed transaction: when it started, and why.
type Failure = Arc<Mutex<Option<(Instant, StoreError)>>>;

impl<T: Send + 'static, R: Send + 'static> Batcher<T, R> {
    /// Starts the writer: `write` gets up to `max` items and answers each, in order, with at
    /// most `concurrency` transactions open at once. `name` labels its metrics: each write's
    /// wait for its transaction, and each transaction.
    pub fn start<F, Fut>(name: &'static str, max: usize, concurrency: usize, write: F) -> Self
    where
        F: Fn(Vec<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<R>, StoreError>> + Send + 'static,
    {
        let max = max.max(1);
        let open = Arc::new(Semaphore::new(concurrency.max(1)));
        let failure: Failure = Arc::default();
        let write = Arc::new(write);
        let (queue, mut pending) = mpsc::channel::<Queued<T, R>>(max * 4);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(max);
            loop {
                // A transaction slot first: while all are taken, writes gather into the next
                // batch.
                let Ok(slot) = open.clone().acquire_owned().await else {
                    return;
                };
                if pending.recv_many(&mut batch, max).await == 0 {
                    return;
                }
                let started = Instant::now();
                // The database failed after these were queued: they get the same answer now
                // (nothing of them was written) instead of waiting for their own.
                let failed = lock(&failure).as_ref().map(|(at, e)| (*at, e.clone()));
                let mut items = Vec::with_capacity(batch.len());
                let mut replies = Vec::with_capacity(batch.len());
                for q in batch.drain(..) {
                    match &failed {
                        Some((at, e)) if q.at <= *at => {
                            let _ = q.reply.send(Err(e.clone()));
                        }
                        _ => {
                            crate::telemetry::store_write_queued(name, started - q.at);
                            items.push(q.item);
                            replies.push(q.reply);
                        }
                    }
                }
                if items.is_empty() {
                    continue;
                }
                let (write, failure) = (write.clone(), failure.clone());
                tokio::spawn(async move {
                    let written = write(items).await;
                    if let Err(e) = &written {
                        // Before the slot is given back: what waits for it must see this.
                        *lock(&failure) = Some((Instant::now(), e.clone()));
                    }
                    drop(slot);
                    crate::telemetry::store_write_batch(name, replies.len(), started.elapsed());
                    match written {
                        Ok(results) => {
                            // A missing answer drops its reply: that caller gets an error.
                            for (reply, result) in replies.into_iter().zip(results) {
                                let _ = reply.send(Ok(result));
                            }
                        }
                        Err(e) => {
                            for reply in replies {
                                let _ = reply.send(Err(e.clone()));
                            }
                        }
                    }
                });
            }
        });
        Batcher { queue }
    }

    /// Writes one item with whatever else is waiting, and answers when it is committed.
    pub async fn write(&self, item: T) -> Result<R, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Queued {
                item,
                reply,
                at: Instant::now(),
            })
            .await
            .map_err(|_| StoreError::Unavailable("the store is shutting down".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the write was not answered".into()))?
    }
}

fn lock(failure: &Failure) -> std::sync::MutexGuard<'_, Option<(Instant, StoreError)>> {
    failure.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn concurrent_writes_share_batches_and_each_gets_its_answer() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let batcher = Arc::new(Batcher::start("test", 8, 1, move |items: Vec<u32>| {
            counted.fetch_add(1, Ordering::SeqCst);
            async move {
                tokio::task::yield_now().await;
                if items.contains(&13) {
                    return Err(StoreError::Unavailable("unlucky".into()));
                }
                Ok(items.into_iter().map(|i| i * 10).collect())
            }
        }));
        let writes: Vec<_> = (0..40u32)
            .filter(|i| *i != 13)
            .map(|i| {
                let b = batcher.clone();
                tokio::spawn(async move { (i, b.write(i).await) })
            })
            .collect();
        for w in writes {
            let (i, answer) = w.await.unwrap();
            assert_eq!(answer.unwrap(), i * 10);
        }
        assert!(
            calls.load(Ordering::SeqCst) < 39,
            "some writes shared a batch"
        );
        assert!(matches!(
            batcher.write(13).await,
            Err(StoreError::Unavailable(_))
        ));
    }

    #[tokio::test]
    async fn a_failed_batch_fails_what_queued_behind_it_at_once() {
        let gate = Arc::new(tokio::sync::Notify::new());
        let calls = Arc::new(AtomicUsize::new(0));
        let (g, counted) = (gate.clone(), calls.clone());
        let batcher = Arc::new(Batcher::start("test", 1, 1, move |_: Vec<u32>| {
            let g = g.clone();
            counted.fetch_add(1, Ordering::SeqCst);
            async move {
                g.notified().await;
                Err::<Vec<u32>, _>(StoreError::Unavailable("down".into()))
            }
        }));
        let writes: Vec<_> = (0..4u32)
            .map(|i| {
                let b = batcher.clone();
                tokio::spawn(async move { b.write(i).await })
            })
            .collect();
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        gate.notify_one();
        for w in writes {
            let answer = tokio::time::timeout(std::time::Duration::from_secs(5), w)
                .await
                .expect("answered without a batch of its own");
            assert!(matches!(answer.unwrap(), Err(StoreError::Unavailable(_))));
        }
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "the queued writes were not tried"
        );
    }

    #[tokio::test]
    async fn a_write_goes_at_once_while_a_transaction_slot_is_free() {
        let gate = Arc::new(tokio::sync::Notify::new());
        let g = gate.clone();
        let batcher = Arc::new(Batcher::start("test", 8, 2, move |items: Vec<u32>| {
            let g = g.clone();
            async move {
                if items.contains(&0) {
                    g.notified().await;
                }
                Ok(items)
            }
        }));
        let held = {
            let b = batcher.clone();
            tokio::spawn(async move { b.write(0).await })
        };
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        let other = tokio::time::timeout(std::time::Duration::from_secs(5), batcher.write(1))
            .await
            .expect("answered while the other transaction is open");
        assert_eq!(other.unwrap(), 1);
        assert!(!held.is_finished());
        gate.notify_one();
        assert_eq!(held.await.unwrap().unwrap(), 0);
    }
}
