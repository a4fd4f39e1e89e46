//! Group commit: concurrent writes of one kind share a transaction.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::oneshot;

use super::StoreError;

type Reply<R> = oneshot::Sender<Result<R, StoreError>>;
type Written<R> = Pin<Box<dyn Future<Output = Result<Vec<R>, StoreError>> + Send>>;
type Write<T, R> = Box<dyn Fn(Vec<T>) -> Written<R> + Send + Sync>;

/// Writes that arrive while a transaction is committing wait and go together in the next one:
/// under load, many requests share one commit (and its wait for the disk) instead of queueing
/// for a commit each; a write that arrives alone goes at once.
///
/// The writer is started by the write that finds none running, on that write's own runtime,
/// and ends when nothing waits. On an HTTP worker (a runtime of its own thread) the commit then
/// runs on the thread of the request that asked for it, over that thread's connections
/// ([`super::local`]): a lone write costs no wake of another thread on the way in, none for
/// each round trip to the database and none on the way back. A long-lived writer on the main
/// runtime cost a create about half a millisecond of such hops on two busy cores.
pub struct Batcher<T, R> {
    shared: Arc<Shared<T, R>>,
}

struct Shared<T, R> {
    /// Labels the metrics: each write's wait for its transaction, and each transaction.
    name: &'static str,
    max: usize,
    write: Write<T, R>,
    state: Mutex<State<T, R>>,
}

struct State<T, R> {
    queue: VecDeque<Queued<T, R>>,
    /// A writer is running: it takes what is queued before it ends.
    writing: bool,
}

/// A write waiting for its transaction, and since when.
struct Queued<T, R> {
    item: T,
    reply: Reply<R>,
    at: Instant,
}

impl<T: Send + 'static, R: Send + 'static> Batcher<T, R> {
    /// `write` gets up to `max` items and answers each, in order. `name` labels its metrics.
    pub fn new<F, Fut>(name: &'static str, max: usize, write: F) -> Self
    where
        F: Fn(Vec<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<R>, StoreError>> + Send + 'static,
    {
        Batcher {
            shared: Arc::new(Shared {
                name,
                max: max.max(1),
                write: Box::new(move |items| Box::pin(write(items))),
                state: Mutex::new(State {
                    queue: VecDeque::new(),
                    writing: false,
                }),
            }),
        }
    }

    /// Writes one item with whatever else is waiting, and answers when it is committed.
    pub async fn write(&self, item: T) -> Result<R, StoreError> {
        let (reply, answer) = oneshot::channel();
        let at = Instant::now();
        let start = {
            let mut state = self.shared.lock();
            state.queue.push_back(Queued { item, reply, at });
            !std::mem::replace(&mut state.writing, true)
        };
        if start {
            // Not awaited here: were this request dropped, what others queued behind it would
            // still be written.
            tokio::spawn(Shared::drain(self.shared.clone()));
        }
        let answered = answer
            .await
            .map_err(|_| StoreError::Unavailable("the write was not answered".into()))?;
        crate::telemetry::store_write_answered(self.shared.name, at.elapsed());
        answered
    }
}

impl<T, R> Shared<T, R> {
    fn lock(&self) -> MutexGuard<'_, State<T, R>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes what is queued, a batch at a time, until nothing is.
    async fn drain(self: Arc<Self>) {
        let mut writer = Writer {
            shared: &self,
            ended: false,
        };
        loop {
            let batch: Vec<Queued<T, R>> = {
                let mut state = self.lock();
                let n = state.queue.len().min(self.max);
                if n == 0 {
                    state.writing = false;
                    writer.ended = true;
                    return;
                }
                state.queue.drain(..n).collect()
            };
            let started = Instant::now();
            let (items, replies): (Vec<T>, Vec<Reply<R>>) = batch
                .into_iter()
                .map(|q| {
                    crate::telemetry::store_write_queued(self.name, started - q.at);
                    (q.item, q.reply)
                })
                .unzip();
            let written = (self.write)(items).await;
            crate::telemetry::store_write_batch(self.name, replies.len(), started.elapsed());
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
                    let queued = std::mem::take(&mut self.lock().queue);
                    for q in queued {
                        let _ = q.reply.send(Err(e.clone()));
                    }
                }
            }
        }
    }
}

/// A running writer. Dropped before it ended (its runtime shut down under it), it leaves no
/// one waiting for good: what is queued is answered with an error (nothing of it was written)
/// and the next write starts a writer.
struct Writer<'a, T, R> {
    shared: &'a Shared<T, R>,
    ended: bool,
}

impl<T, R> Drop for Writer<'_, T, R> {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        let queued = {
            let mut state = self.shared.lock();
            state.writing = false;
            std::mem::take(&mut state.queue)
        };
        drop(queued);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn concurrent_writes_share_batches_and_each_gets_its_answer() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let batcher = Arc::new(Batcher::new("test", 8, move |items: Vec<u32>| {
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
        let batcher = Arc::new(Batcher::new("test", 1, move |_: Vec<u32>| {
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

    #[test]
    fn the_write_that_finds_no_writer_writes_on_its_own_thread() {
        // Started on another runtime, as the submitter is (the main one), and written to from
        // this thread's own runtime, as an HTTP worker does.
        let main = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        let batcher = main.block_on(async {
            Batcher::new("test", 8, |items: Vec<u32>| async move {
                Ok(items
                    .into_iter()
                    .map(|_| std::thread::current().id())
                    .collect())
            })
        });
        let worker = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let written_on = worker.block_on(batcher.write(1)).unwrap();
        assert_eq!(written_on, std::thread::current().id());
    }

    #[test]
    fn a_writer_whose_runtime_shut_down_under_it_leaves_the_next_write_a_writer() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let batcher = Arc::new(Batcher::new("test", 8, move |items: Vec<u32>| {
            let first = counted.fetch_add(1, Ordering::SeqCst) == 0;
            async move {
                if first {
                    std::future::pending::<()>().await;
                }
                Ok(items)
            }
        }));
        let doomed = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let b = batcher.clone();
        let first = doomed.spawn(async move { b.write(1).await });
        doomed.block_on(async {
            while calls.load(Ordering::SeqCst) == 0 {
                tokio::task::yield_now().await;
            }
        });
        // Its writer is dropped mid-write, as an HTTP worker's tasks are when the server stops.
        drop(doomed);
        let next = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let answers = next.block_on(async {
            let second = tokio::time::timeout(Duration::from_secs(5), batcher.write(2)).await;
            (second, first.await)
        });
        assert_eq!(answers.0.expect("no writer was started").unwrap(), 2);
        assert!(answers.1.is_err(), "the first write went with its runtime");
    }
}
