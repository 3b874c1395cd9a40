//! Capacity and queues of the outputs: budgets counted in points and bytes, RAII permits, and
//! the unbounded-by-count queues they bound.
//!
//! A [`Budget`] covers every point an output (or one of its partitions or destinations) has
//! accepted and not yet delivered: points waiting in a queue, points being batched, points in
//! flight or being retried. Capacity is taken as a [`Permit`] that travels with the data and
//! gives it back when dropped, whatever path drops it (delivered, refused, shed at shutdown),
//! so memory stays bounded however long an upstream is down and nothing has to remember to
//! release.
//!
//! Acquiring never waits: [`Budget::try_acquire`] answers at once, and a caller that wants to
//! wait awaits [`Budget::room`] (woken whenever capacity comes back anywhere in the budget's
//! tree, or it closes) and tries again. That is what lets the pipeline offer a batch to every
//! output first and then wait on the full ones concurrently.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
};

use prometheus::IntGauge;
use tokio::sync::Notify;

pub use crate::output::disk::Ticket;

#[derive(Debug)]
struct Usage {
    points: usize,
    bytes: usize,
    closed: bool,
}

#[derive(Debug)]
struct BudgetInner {
    usage: Mutex<Usage>,
    max_points: usize,
    max_bytes: usize,
    /// The budget this one is a share of (an output's total for a partition's share).
    parent: Option<Budget>,
    /// Woken on every release and on close. Shared down a tree, so waiting on any budget of
    /// a tree hears every release in it.
    room: Arc<Notify>,
    gauge: Option<IntGauge>,
}

/// A bounded amount of points and bytes, optionally a share of a parent budget.
#[derive(Debug, Clone)]
pub struct Budget {
    inner: Arc<BudgetInner>,
}

/// What [`Budget::try_acquire`] found.
#[derive(Debug)]
pub enum Acquire {
    Granted(Permit),
    Full,
    Closed,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Budget {
    /// A root budget. `gauge` (points) is moved by deltas, so several budgets can share one
    /// series and it reads their sum.
    pub fn new(max_points: usize, max_bytes: usize, gauge: Option<IntGauge>) -> Self {
        Self::build(max_points, max_bytes, None, Arc::new(Notify::new()), gauge)
    }

    /// A share of this budget: taking from it takes from both, and it is full when either is.
    pub fn child(&self, max_points: usize, max_bytes: usize) -> Self {
        let room = self.inner.room.clone();
        Self::build(max_points, max_bytes, Some(self.clone()), room, None)
    }

    /// A share of this budget whose own points also move `gauge` (a per-destination figure).
    pub fn child_with_gauge(&self, max_points: usize, max_bytes: usize, gauge: IntGauge) -> Self {
        let room = self.inner.room.clone();
        Self::build(max_points, max_bytes, Some(self.clone()), room, Some(gauge))
    }

    fn build(
        max_points: usize,
        max_bytes: usize,
        parent: Option<Budget>,
        room: Arc<Notify>,
        gauge: Option<IntGauge>,
    ) -> Self {
        Self {
            inner: Arc::new(BudgetInner {
                usage: Mutex::new(Usage {
                    points: 0,
                    bytes: 0,
                    closed: false,
                }),
                max_points,
                max_bytes,
                parent,
                room,
                gauge,
            }),
        }
    }

    fn fits(&self, u: &Usage, points: usize, bytes: usize) -> bool {
        // An entry larger than the whole budget goes through an empty one, so it can never
        // wait forever.
        (u.points + points <= self.inner.max_points && u.bytes + bytes <= self.inner.max_bytes)
            || (u.points == 0 && u.bytes == 0)
    }

    /// Takes capacity for `points` and `bytes` if both this budget and its parents have it.
    pub fn try_acquire(&self, points: usize, bytes: usize) -> Acquire {
        let mut u = lock(&self.inner.usage);
        if u.closed {
            return Acquire::Closed;
        }
        if !self.fits(&u, points, bytes) {
            return Acquire::Full;
        }
        if let Some(parent) = &self.inner.parent {
            match parent.try_acquire(points, bytes) {
                Acquire::Granted(p) => p.forget(),
                other => return other,
            }
        }
        u.points += points;
        u.bytes += bytes;
        drop(u);
        self.gauge_add(points as i64);
        Acquire::Granted(Permit {
            budget: Some(self.clone()),
            points,
            bytes,
            tickets: Vec::new(),
        })
    }

    /// What could still be taken now, in points and bytes (this budget and its parents).
    pub fn room(&self) -> (usize, usize) {
        let u = lock(&self.inner.usage);
        let mut room = (
            self.inner.max_points.saturating_sub(u.points),
            self.inner.max_bytes.saturating_sub(u.bytes),
        );
        drop(u);
        if let Some(parent) = &self.inner.parent {
            let (p, b) = parent.room();
            room = (room.0.min(p), room.1.min(b));
        }
        room
    }

    /// Takes capacity whether or not there is room (a handover from a retired output, whose
    /// points were accepted long ago and must not be refused now). Even a closed budget
    /// counts it, so the permit's release stays balanced.
    pub fn force(&self, points: usize, bytes: usize) -> Permit {
        let mut b = Some(self);
        while let Some(budget) = b {
            let mut u = lock(&budget.inner.usage);
            u.points += points;
            u.bytes += bytes;
            drop(u);
            budget.gauge_add(points as i64);
            b = budget.inner.parent.as_ref();
        }
        Permit {
            budget: Some(self.clone()),
            points,
            bytes,
            tickets: Vec::new(),
        }
    }

    fn gauge_add(&self, n: i64) {
        if let Some(g) = &self.inner.gauge {
            g.add(n);
        }
    }

    fn release(&self, points: usize, bytes: usize) {
        let mut b = Some(self);
        while let Some(budget) = b {
            let mut u = lock(&budget.inner.usage);
            let p = points.min(u.points);
            u.points -= p;
            u.bytes -= bytes.min(u.bytes);
            drop(u);
            budget.gauge_add(-(p as i64));
            b = budget.inner.parent.as_ref();
        }
        self.inner.room.notify_waiters();
    }

    /// Interest in the next release or close anywhere in this budget's tree.
    pub fn waiter(&self) -> Waiter {
        Waiter {
            notify: self.inner.room.clone(),
        }
    }

    /// Refuses every further acquisition and wakes all waiters.
    pub fn close(&self) {
        lock(&self.inner.usage).closed = true;
        self.inner.room.notify_waiters();
    }

    /// Points taken and not yet released.
    pub fn points(&self) -> usize {
        lock(&self.inner.usage).points
    }

    pub fn bytes(&self) -> usize {
        lock(&self.inner.usage).bytes
    }

    pub fn max_points(&self) -> usize {
        self.inner.max_points
    }

    /// Nothing taken: a budget that can be forgotten.
    pub fn is_idle(&self) -> bool {
        let u = lock(&self.inner.usage);
        u.points == 0 && u.bytes == 0
    }
}

/// A registered interest in the next release of a budget tree.
#[derive(Debug)]
pub struct Waiter {
    notify: Arc<Notify>,
}

impl Waiter {
    /// Interest in `notify` (a queue that is not a budget: a disk buffer's room).
    pub fn new(notify: Arc<Notify>) -> Self {
        Self { notify }
    }

    /// Registers now and returns the future to await after trying: register *before* trying
    /// to acquire, so a release between the try and the wait is not missed.
    pub fn register(&self) -> std::pin::Pin<Box<tokio::sync::futures::OwnedNotified>> {
        let mut n = Box::pin(self.notify.clone().notified_owned());
        n.as_mut().enable();
        n
    }
}

/// Capacity taken from a [`Budget`], given back when dropped. It also carries the
/// [`Ticket`]s of the disk-buffer records its points came from: they travel with the data
/// through every split and merge, and the record is acknowledged once the last piece of it is
/// dropped (delivered, or given up on and counted).
#[derive(Debug, Default)]
pub struct Permit {
    budget: Option<Budget>,
    points: usize,
    bytes: usize,
    tickets: Vec<Arc<Ticket>>,
}

impl Permit {
    pub fn points(&self) -> usize {
        self.points
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Splits off a permit for `points` and `bytes` (at most what this one holds).
    pub fn split(&mut self, points: usize, bytes: usize) -> Permit {
        let points = points.min(self.points);
        let bytes = bytes.min(self.bytes);
        self.points -= points;
        self.bytes -= bytes;
        Permit {
            budget: self.budget.clone(),
            points,
            bytes,
            // Each piece holds the records until it is done with them.
            tickets: self.tickets.clone(),
        }
    }

    /// Adds another permit of the same budget to this one.
    pub fn merge(&mut self, mut other: Permit) {
        if self.budget.is_none() {
            self.budget = other.budget.take();
        }
        self.points += std::mem::take(&mut other.points);
        self.bytes += std::mem::take(&mut other.bytes);
        for t in other.tickets.drain(..) {
            if !self.tickets.iter().any(|mine| Arc::ptr_eq(mine, &t)) {
                self.tickets.push(t);
            }
        }
    }

    /// Attaches the disk-buffer records these points came from.
    pub fn with_tickets(mut self, tickets: Vec<Arc<Ticket>>) -> Self {
        self.tickets.extend(tickets);
        self
    }

    /// Takes the records off (to move the points to another output's permit).
    pub fn take_tickets(&mut self) -> Vec<Arc<Ticket>> {
        std::mem::take(&mut self.tickets)
    }

    pub fn tickets(&self) -> &[Arc<Ticket>] {
        &self.tickets
    }

    /// Lets go without releasing (the capacity was moved elsewhere).
    fn forget(mut self) {
        self.budget = None;
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(b) = self.budget.take() {
            if self.points > 0 || self.bytes > 0 {
                b.release(self.points, self.bytes);
            }
        }
    }
}

/// A FIFO of entries whose size a [`Budget`] bounds (the entries carry its permits): push
/// never waits, pop waits for entries.
#[derive(Debug)]
pub struct EntryQueue<T> {
    state: Mutex<QueueState<T>>,
    readable: Notify,
}

#[derive(Debug)]
struct QueueState<T> {
    entries: VecDeque<T>,
    closed: bool,
}

impl<T> Default for EntryQueue<T> {
    fn default() -> Self {
        Self {
            state: Mutex::new(QueueState {
                entries: VecDeque::new(),
                closed: false,
            }),
            readable: Notify::new(),
        }
    }
}

impl<T> EntryQueue<T> {
    /// Appends; gives the entry back when the queue is closed.
    pub fn push(&self, entry: T) -> Result<(), T> {
        let mut st = lock(&self.state);
        if st.closed {
            return Err(entry);
        }
        st.entries.push_back(entry);
        drop(st);
        self.readable.notify_one();
        Ok(())
    }

    /// Takes every queued entry, waiting for at least one. `None` once closed and empty.
    pub async fn pop_all(&self, out: &mut Vec<T>) -> Option<()> {
        loop {
            let readable = self.readable.notified();
            tokio::pin!(readable);
            readable.as_mut().enable();
            {
                let mut st = lock(&self.state);
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

    /// Takes every queued entry without waiting.
    pub fn take_all(&self, out: &mut Vec<T>) {
        out.extend(lock(&self.state).entries.drain(..));
    }

    /// Removes the oldest entry (for `drop_oldest`).
    pub fn pop_front(&self) -> Option<T> {
        lock(&self.state).entries.pop_front()
    }

    /// Refuses further pushes and wakes the consumer; queued entries can still be popped.
    pub fn close(&self) {
        lock(&self.state).closed = true;
        self.readable.notify_waiters();
        self.readable.notify_one();
    }

    /// Closed and nothing left to pop: a consumer can stop.
    pub fn is_drained(&self) -> bool {
        let st = lock(&self.state);
        st.closed && st.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn budget(points: usize) -> Budget {
        Budget::new(points, usize::MAX, None)
    }

    #[test]
    fn permits_give_capacity_back_when_dropped() {
        let b = budget(10);
        let p = match b.try_acquire(8, 80) {
            Acquire::Granted(p) => p,
            other => panic!("{other:?}"),
        };
        assert!(matches!(b.try_acquire(5, 0), Acquire::Full));
        drop(p);
        assert_eq!(b.points(), 0);
        assert!(matches!(b.try_acquire(5, 0), Acquire::Granted(_)));
    }

    #[test]
    fn split_and_merge_keep_the_count() {
        let b = budget(100);
        let Acquire::Granted(mut p) = b.try_acquire(10, 100) else {
            panic!()
        };
        let q = p.split(3, 30);
        assert_eq!((p.points(), q.points(), b.points()), (7, 3, 10));
        drop(q);
        assert_eq!(b.points(), 7);
        let Acquire::Granted(r) = b.try_acquire(2, 0) else {
            panic!()
        };
        p.merge(r);
        assert_eq!((p.points(), b.points()), (9, 9));
        drop(p);
        assert_eq!((b.points(), b.bytes()), (0, 0));
    }

    #[test]
    fn a_share_is_full_when_its_parent_is() {
        let total = budget(10);
        let (a, b) = (total.child(6, usize::MAX), total.child(6, usize::MAX));
        let Acquire::Granted(pa) = a.try_acquire(6, 0) else {
            panic!()
        };
        assert!(matches!(a.try_acquire(1, 0), Acquire::Full), "own share");
        let Acquire::Granted(pb) = b.try_acquire(4, 0) else {
            panic!()
        };
        assert!(matches!(b.try_acquire(1, 0), Acquire::Full), "parent");
        assert_eq!(total.points(), 10);
        drop(pa);
        assert_eq!(total.points(), 4);
        drop(pb);
        assert!(total.is_idle());
    }

    #[test]
    fn oversized_requests_pass_an_empty_budget() {
        let b = budget(10);
        assert!(matches!(b.try_acquire(50, 0), Acquire::Granted(_)));
    }

    #[test]
    fn closed_budgets_refuse_and_forced_permits_balance() {
        let b = budget(10);
        b.close();
        assert!(matches!(b.try_acquire(1, 0), Acquire::Closed));
        let p = b.force(20, 5);
        assert_eq!(b.points(), 20);
        drop(p);
        assert!(b.is_idle());
    }

    #[tokio::test]
    async fn room_wakes_on_release_anywhere_in_the_tree() {
        let total = budget(10);
        let share = total.child(10, usize::MAX);
        let Acquire::Granted(p) = share.try_acquire(10, 0) else {
            panic!()
        };
        let other = total.child(10, usize::MAX);
        let waiter = other.waiter();
        let wait = waiter.register();
        drop(p);
        tokio::time::timeout(Duration::from_secs(1), wait)
            .await
            .expect("woken by a release in a sibling share");
    }

    #[tokio::test]
    async fn queue_close_ends_pop_after_draining_and_refuses_push() {
        let q = EntryQueue::default();
        q.push(1).unwrap();
        q.close();
        assert_eq!(q.push(2), Err(2));
        let mut out = Vec::new();
        assert!(q.pop_all(&mut out).await.is_some());
        assert!(q.pop_all(&mut out).await.is_none());
        assert_eq!(out, vec![1]);
    }
}
