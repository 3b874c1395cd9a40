//! An output's bounded queue, counted in points.
//!
//! Capacity covers every point the output has accepted and not yet delivered: points waiting
//! here, points the worker is batching, and points in flight or being retried. Only delivery
//! (or an explicit, counted drop) gives capacity back, so memory stays bounded however long an
//! upstream is down, and a full queue pushes back on the listeners (`overflow = "block"`).

use std::{collections::VecDeque, sync::Mutex};

use prometheus::IntGauge;
use tokio::sync::Notify;

use crate::config::Overflow;

/// Anything that can be queued: it knows how many points it carries.
pub trait Weighted {
    fn points(&self) -> usize;
}

#[derive(Debug, PartialEq, Eq)]
pub enum Push {
    Accepted,
    /// The queue is closed (shutting down): nothing was taken.
    Closed,
    /// `drop_newest`: the entry was refused; it held this many points.
    DroppedNewest(usize),
    /// `drop_oldest`: the entry was taken after this many queued points were discarded.
    DroppedOldest(usize),
}

#[derive(Debug)]
pub struct PointQueue<T> {
    state: Mutex<State<T>>,
    capacity: usize,
    /// Woken when entries arrive or the queue closes.
    readable: Notify,
    /// Woken when capacity is released.
    writable: Notify,
    gauge: IntGauge,
}

#[derive(Debug)]
struct State<T> {
    entries: VecDeque<T>,
    /// Points accepted and not yet released (queued + batching + in flight).
    outstanding: usize,
    closed: bool,
}

impl<T: Weighted> PointQueue<T> {
    /// `gauge` is moved by deltas, so several queues (one per destination of an output) can
    /// share one series and it reads their sum.
    pub fn new(capacity: usize, gauge: IntGauge) -> Self {
        Self {
            state: Mutex::new(State {
                entries: VecDeque::new(),
                outstanding: 0,
                closed: false,
            }),
            capacity,
            readable: Notify::new(),
            writable: Notify::new(),
            gauge,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Offers an entry under `policy`. With `Block` this waits for room; callers that must
    /// not wait forever (HTTP writes) wrap it in a timeout. An entry larger than the whole
    /// capacity is accepted once the queue is empty, so it can never wait forever.
    pub async fn push(&self, entry: T, policy: Overflow) -> Push {
        let n = entry.points();
        let mut entry = Some(entry);
        loop {
            let writable = self.writable.notified();
            tokio::pin!(writable);
            writable.as_mut().enable();
            {
                let mut st = self.lock();
                if st.closed {
                    return Push::Closed;
                }
                if st.outstanding + n <= self.capacity || st.outstanding == 0 {
                    self.accept(&mut st, entry.take().expect("entry present"), n);
                    return Push::Accepted;
                }
                match policy {
                    Overflow::Block => {}
                    Overflow::DropNewest => return Push::DroppedNewest(n),
                    Overflow::DropOldest => {
                        let mut dropped = 0;
                        while st.outstanding + n > self.capacity {
                            let Some(old) = st.entries.pop_front() else {
                                break;
                            };
                            let p = old.points();
                            dropped += p;
                            st.outstanding -= p;
                        }
                        self.gauge.sub(dropped as i64);
                        if st.outstanding + n > self.capacity && st.outstanding != 0 {
                            // What is left is in flight: it cannot be dropped, so this entry is.
                            return Push::DroppedNewest(n + dropped);
                        }
                        self.accept(&mut st, entry.take().expect("entry present"), n);
                        return Push::DroppedOldest(dropped);
                    }
                }
            }
            writable.await;
        }
    }

    fn accept(&self, st: &mut State<T>, entry: T, n: usize) {
        st.outstanding += n;
        st.entries.push_back(entry);
        self.gauge.add(n as i64);
        self.readable.notify_one();
    }

    /// Takes every queued entry, waiting for at least one. `None` once the queue is closed
    /// and empty.
    pub async fn pop_all(&self, out: &mut Vec<T>) -> Option<()> {
        loop {
            let readable = self.readable.notified();
            tokio::pin!(readable);
            readable.as_mut().enable();
            {
                let mut st = self.lock();
                if !st.entries.is_empty() {
                    out.extend(st.entries.drain(..));
                    return Some(());
                }
                if st.closed {
                    return None;
                }
            }
            readable.await;
        }
    }

    /// Gives back capacity for points that were delivered or dropped downstream.
    pub fn release(&self, n: usize) {
        let mut st = self.lock();
        let n = n.min(st.outstanding);
        st.outstanding -= n;
        self.gauge.sub(n as i64);
        drop(st);
        self.writable.notify_waiters();
    }

    /// Refuses further pushes and wakes every waiter; queued entries can still be popped.
    pub fn close(&self) {
        self.lock().closed = true;
        self.readable.notify_waiters();
        self.readable.notify_one();
        self.writable.notify_waiters();
    }

    pub fn outstanding(&self) -> usize {
        self.lock().outstanding
    }

    /// Closed and nothing left to pop: a consumer can stop.
    pub fn is_drained(&self) -> bool {
        let st = self.lock();
        st.closed && st.entries.is_empty()
    }

    /// Takes every queued entry without waiting (to hand them elsewhere).
    pub fn take_all(&self, out: &mut Vec<T>) {
        out.extend(self.lock().entries.drain(..));
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::Duration};

    use super::*;

    impl Weighted for usize {
        fn points(&self) -> usize {
            *self
        }
    }

    fn queue(cap: usize) -> Arc<PointQueue<usize>> {
        let g = IntGauge::new("q", "q").unwrap();
        Arc::new(PointQueue::new(cap, g))
    }

    #[tokio::test]
    async fn block_waits_for_release() {
        let q = queue(10);
        assert_eq!(q.push(8, Overflow::Block).await, Push::Accepted);
        let q2 = q.clone();
        let pending = tokio::spawn(async move { q2.push(5, Overflow::Block).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!pending.is_finished(), "must wait while full");
        q.release(8);
        assert_eq!(pending.await.unwrap(), Push::Accepted);
        assert_eq!(q.outstanding(), 5);
    }

    #[tokio::test]
    async fn drop_newest_refuses_and_drop_oldest_evicts() {
        let q = queue(10);
        q.push(6, Overflow::Block).await;
        assert_eq!(
            q.push(6, Overflow::DropNewest).await,
            Push::DroppedNewest(6)
        );
        q.push(3, Overflow::Block).await;
        assert_eq!(
            q.push(4, Overflow::DropOldest).await,
            Push::DroppedOldest(6)
        );
        let mut out = Vec::new();
        q.pop_all(&mut out).await.unwrap();
        assert_eq!(out, vec![3, 4]);
        assert_eq!(q.outstanding(), 7);
    }

    #[tokio::test]
    async fn drop_oldest_cannot_evict_in_flight_points() {
        let q = queue(10);
        q.push(9, Overflow::Block).await;
        let mut out = Vec::new();
        q.pop_all(&mut out).await.unwrap(); // now "in flight", not evictable
        assert_eq!(
            q.push(5, Overflow::DropOldest).await,
            Push::DroppedNewest(5)
        );
    }

    #[tokio::test]
    async fn oversized_entry_goes_through_an_empty_queue() {
        let q = queue(10);
        assert_eq!(q.push(50, Overflow::Block).await, Push::Accepted);
    }

    #[tokio::test]
    async fn close_ends_pop_after_draining_and_refuses_push() {
        let q = queue(10);
        q.push(1, Overflow::Block).await;
        q.close();
        assert_eq!(q.push(1, Overflow::Block).await, Push::Closed);
        let mut out = Vec::new();
        assert!(q.pop_all(&mut out).await.is_some());
        assert!(q.pop_all(&mut out).await.is_none());
    }
}
