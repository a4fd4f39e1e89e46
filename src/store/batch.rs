//! Group commit: concurrent writes of one kind share a transaction.

use std::future::Future;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use super::StoreError;

type Reply<R> = oneshot::Sender<Result<R, StoreError>>;

/// Writes that arrive while a transaction is committing wait and go together in the next one:
/// under load, many requests share one commit (and its wait for the disk) instead of queueing
/// for a commit each; a write that arrives alone goes at once.
pub struct Batcher<T, R> {
    queue: mpsc::Sender<Queued<T, R>>,
}

/// A write waiting for its transaction, and since when.
struct Queued<T, R> {
    item: T,
    reply: Reply<R>,
    at: Instant,
}

impl<T: Send + 'static, R: Send + 'static> Batcher<T, R> {
    /// Starts the writer: `write` gets up to `max` items and answers each, in order. `name`
    /// labels its metrics: each write's wait for its transaction, and each transaction.
    pub fn start<F, Fut>(name: &'static str, max: usize, write: F) -> Self
    where
        F: Fn(Vec<T>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Vec<R>, StoreError>> + Send,
    {
        let max = max.max(1);
        let (queue, mut pending) = mpsc::channel::<Queued<T, R>>(max * 4);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(max);
            while pending.recv_many(&mut batch, max).await > 0 {
                let started = Instant::now();
                let (items, replies): (Vec<T>, Vec<Reply<R>>) = batch
                    .drain(..)
                    .map(|q: Queued<T, R>| {
                        crate::telemetry::store_write_queued(name, started - q.at);
                        (q.item, q.reply)
                    })
                    .unzip();
                let written = write(items).await;
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
                        // The database just failed: what queued meanwhile gets the same answer
                        // now (nothing of it was written) instead of waiting for its own.
                        while let Ok(queued) = pending.try_recv() {
                            let _ = queued.reply.send(Err(e.clone()));
                        }
                    }
                }
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn concurrent_writes_share_batches_and_each_gets_its_answer() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let batcher = Arc::new(Batcher::start("test", 8, move |items: Vec<u32>| {
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
        let batcher = Arc::new(Batcher::start("test", 1, move |_: Vec<u32>| {
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
}
