//! The concurrency limit: a fixed number of slots for running attempts, handed to waiters by
//! priority (higher first), then in arrival order. Nothing waiting is ever dropped.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use tokio::sync::oneshot;

#[derive(Debug)]
pub(crate) struct Slots {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    free: usize,
    next_seq: u64,
    waiters: BinaryHeap<Waiter>,
}

#[derive(Debug)]
struct Waiter {
    priority: i32,
    seq: u64,
    wake: oneshot::Sender<()>,
}

impl PartialEq for Waiter {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Waiter {}

impl PartialOrd for Waiter {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Waiter {
    fn cmp(&self, other: &Self) -> Ordering {
        // Max-heap: higher priority first, then the earlier arrival (smaller seq).
        self.priority.cmp(&other.priority).then_with(|| other.seq.cmp(&self.seq))
    }
}

impl Slots {
    pub(crate) fn new(count: usize) -> Arc<Self> {
        Arc::new(Slots {
            state: Mutex::new(State { free: count, next_seq: 0, waiters: BinaryHeap::new() }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits for a slot. Dropping the future before it completes gives back any slot it was
    /// handed.
    pub(crate) fn acquire(self: &Arc<Self>, priority: i32) -> Acquire {
        let mut state = self.lock();
        if state.free > 0 && state.waiters.is_empty() {
            state.free -= 1;
            return Acquire { slots: Arc::clone(self), stage: Stage::Holding };
        }
        let (wake, rx) = oneshot::channel();
        let seq = state.next_seq;
        state.next_seq += 1;
        state.waiters.push(Waiter { priority, seq, wake });
        Acquire { slots: Arc::clone(self), stage: Stage::Waiting(rx) }
    }

    fn release(&self) {
        let mut state = self.lock();
        while let Some(waiter) = state.waiters.pop() {
            if waiter.wake.send(()).is_ok() {
                return;
            }
        }
        state.free += 1;
    }

    /// How many wait for a slot.
    pub(crate) fn waiting(&self) -> usize {
        self.lock().waiters.len()
    }
}

/// A slot, given back when dropped.
#[derive(Debug)]
pub(crate) struct Permit {
    slots: Arc<Slots>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.slots.release();
    }
}

#[derive(Debug)]
pub(crate) struct Acquire {
    slots: Arc<Slots>,
    stage: Stage,
}

#[derive(Debug)]
enum Stage {
    /// A slot is ours and not yet handed to a `Permit`.
    Holding,
    /// Waiting to be handed a slot.
    Waiting(oneshot::Receiver<()>),
    /// The slot went to a `Permit`.
    Done,
}

impl Future for Acquire {
    type Output = Permit;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Permit> {
        if let Stage::Waiting(rx) = &mut self.stage {
            // The sender is dropped only after a successful send, or with the `Slots`, which
            // this future keeps alive: either way the slot is ours once this is ready.
            if Pin::new(rx).poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
        self.stage = Stage::Done;
        Poll::Ready(Permit { slots: Arc::clone(&self.slots) })
    }
}

impl Drop for Acquire {
    fn drop(&mut self) {
        match std::mem::replace(&mut self.stage, Stage::Done) {
            Stage::Holding => self.slots.release(),
            Stage::Waiting(mut rx) => {
                rx.close();
                if rx.try_recv().is_ok() {
                    self.slots.release();
                }
            }
            Stage::Done => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn higher_priority_waiters_go_first_then_fifo() {
        let slots = Slots::new(1);
        let held = slots.acquire(0).await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut handles = Vec::new();
        for (name, priority) in [("low", 0), ("high", 5), ("low2", 0), ("mid", 2)] {
            let acquire = slots.acquire(priority);
            let order = Arc::clone(&order);
            handles.push(tokio::spawn(async move {
                let _permit = acquire.await;
                order.lock().unwrap().push(name);
            }));
        }
        assert_eq!(slots.waiting(), 4);
        drop(held);
        for h in handles {
            h.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), ["high", "mid", "low", "low2"]);
    }

    #[tokio::test]
    async fn dropped_waiters_do_not_leak_slots() {
        let slots = Slots::new(1);
        let held = slots.acquire(0).await;
        let abandoned = slots.acquire(0);
        drop(held); // handed to `abandoned`, which is then dropped unpolled
        drop(abandoned);
        drop(slots.acquire(0)); // an immediate slot, dropped unpolled
        let again = tokio::time::timeout(std::time::Duration::from_secs(5), slots.acquire(0)).await;
        assert!(again.is_ok(), "the slot came back");
    }
}
