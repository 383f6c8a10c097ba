//! A work queue that coalesces keys: a key queued many times before it is processed is processed
//! once; a key queued while it is being processed is processed again afterwards, never twice at
//! the same time.

use std::collections::{HashSet, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

#[derive(Debug)]
struct Inner<K> {
    order: VecDeque<K>,
    queued: HashSet<K>,
    active: HashSet<K>,
    /// Keys queued again while active.
    again: HashSet<K>,
}

/// The queue; clones share it.
#[derive(Debug)]
pub(crate) struct Queue<K> {
    inner: Arc<Mutex<Inner<K>>>,
    notify: Arc<Notify>,
}

impl<K> Clone for Queue<K> {
    fn clone(&self) -> Self {
        Queue {
            inner: self.inner.clone(),
            notify: self.notify.clone(),
        }
    }
}

impl<K: Clone + Eq + Hash> Default for Queue<K> {
    fn default() -> Self {
        Queue::new()
    }
}

impl<K: Clone + Eq + Hash> Queue<K> {
    /// An empty queue.
    pub(crate) fn new() -> Queue<K> {
        Queue {
            inner: Arc::new(Mutex::new(Inner {
                order: VecDeque::new(),
                queued: HashSet::new(),
                active: HashSet::new(),
                again: HashSet::new(),
            })),
            notify: Arc::new(Notify::new()),
        }
    }

    /// Queues `key` unless it is already queued.
    pub(crate) fn push(&self, key: K) {
        let Ok(mut q) = self.inner.lock() else { return };
        if q.active.contains(&key) {
            q.again.insert(key);
            return;
        }
        if q.queued.insert(key.clone()) {
            q.order.push_back(key);
            drop(q);
            self.notify.notify_one();
        }
    }

    /// Waits for the next key and marks it active; call [`Queue::done`] when finished.
    pub(crate) async fn pop(&self) -> K {
        loop {
            let notified = self.notify.notified();
            if let Some(k) = self.try_pop() {
                return k;
            }
            notified.await;
        }
    }

    fn try_pop(&self) -> Option<K> {
        let mut q = self.inner.lock().ok()?;
        let key = q.order.pop_front()?;
        q.queued.remove(&key);
        q.active.insert(key.clone());
        let more = !q.order.is_empty();
        drop(q);
        if more {
            // Wake another consumer for the remaining keys.
            self.notify.notify_one();
        }
        Some(key)
    }

    /// Marks `key` finished; it is queued again if it was pushed meanwhile.
    pub(crate) fn done(&self, key: &K) {
        let again = {
            let Ok(mut q) = self.inner.lock() else { return };
            q.active.remove(key);
            q.again.remove(key)
        };
        if again {
            self.push(key.clone());
        }
    }

    /// Keys waiting (not counting active ones).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner.lock().map(|q| q.order.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn coalesces_and_requeues_active_keys() {
        let q = Queue::new();
        q.push("a");
        q.push("b");
        q.push("a");
        assert_eq!(q.len(), 2);
        let a = q.pop().await;
        assert_eq!(a, "a");
        q.push("a"); // while active
        assert_eq!(q.len(), 1, "not queued twice while active");
        let b = q.pop().await;
        assert_eq!(b, "b");
        q.done(&b);
        q.done(&a);
        assert_eq!(q.pop().await, "a", "requeued after done");
    }

    #[tokio::test]
    async fn pop_waits_for_a_push() {
        let q: Queue<u32> = Queue::new();
        let q2 = q.clone();
        let t = tokio::spawn(async move { q2.pop().await });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        q.push(7);
        assert_eq!(t.await.unwrap(), 7);
    }
}
