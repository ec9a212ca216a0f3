//! Graceful shutdown: one flag that every accept loop and connection
//! watches (each through a [`Watch`], woken when the drain starts), and a
//! count of the tasks still running so `wait` can tell when the last
//! in-flight request has finished. Dropping the control starts the drain
//! too: with no one left to wait for them, loops and connections close.

use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::sync::Notify;

/// A cloneable handle; each clone counts as one task still running.
#[derive(Debug)]
pub struct Drain {
    shared: Arc<Shared>,
    live: Arc<Notify>,
    _token: Arc<()>,
}

/// The drain flag, and the wakers of the connections waiting on it.
#[derive(Debug, Default)]
struct Shared {
    draining: AtomicBool,
    slots: Mutex<Vec<Weak<Slot>>>,
}

/// Where a connection leaves its waker while it waits.
type Slot = Mutex<Option<Waker>>;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// A connection's view of the drain: a flag to read and a waker to leave,
/// where a watch `changed()` per wait registered a waiter and removed it
/// again under the channel's lock every time.
#[derive(Debug)]
pub struct Watch {
    shared: Arc<Shared>,
    slot: Arc<Slot>,
}

impl Watch {
    pub fn is_draining(&self) -> bool {
        self.shared.draining.load(Ordering::Acquire)
    }

    /// Ready once the drain has started; otherwise the task is woken when
    /// it does.
    pub fn poll_drained(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.is_draining() {
            return Poll::Ready(());
        }
        {
            let mut waker = lock(&self.slot);
            if !waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *waker = Some(cx.waker().clone());
            }
        }
        // Started while the waker was being left: it may have been missed.
        if self.is_draining() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Resolves once the drain has started.
    pub async fn drained(&self) {
        poll_fn(|cx| self.poll_drained(cx)).await
    }
}

impl Clone for Drain {
    fn clone(&self) -> Self {
        Drain {
            shared: self.shared.clone(),
            live: self.live.clone(),
            _token: self._token.clone(),
        }
    }
}

impl Drop for Drain {
    fn drop(&mut self) {
        self.live.notify_one();
    }
}

/// The controlling side: starts the drain and waits for it.
#[derive(Debug)]
pub struct DrainControl {
    shared: Arc<Shared>,
    live: Arc<Notify>,
    token: Arc<()>,
}

pub fn channel() -> (DrainControl, Drain) {
    let live = Arc::new(Notify::new());
    let token = Arc::new(());
    let shared = Arc::new(Shared::default());
    let drain = Drain {
        shared: shared.clone(),
        live: live.clone(),
        _token: token.clone(),
    };
    (
        DrainControl {
            shared,
            live,
            token,
        },
        drain,
    )
}

impl Drain {
    pub fn is_draining(&self) -> bool {
        self.shared.draining.load(Ordering::Acquire)
    }

    /// One connection's view of the drain, cheap to poll at every wait.
    pub fn watch(&self) -> Watch {
        let slot = Arc::new(Mutex::new(None));
        let mut slots = lock(&self.shared.slots);
        // Closed connections' slots go when the list would grow, so it
        // stays within about twice the open connections.
        if slots.len() == slots.capacity() {
            slots.retain(|slot| slot.strong_count() > 0);
        }
        slots.push(Arc::downgrade(&slot));
        Watch {
            shared: self.shared.clone(),
            slot,
        }
    }
}
impl Drop for DrainControl {
    /// Nobody can wait for the drain any more: everything closes.
    fn drop(&mut self) {
        self.start();
    }
}

impl DrainControl {
    pub fn start(&self) {
        self.shared.draining.store(true, Ordering::Release);
        let wakers: Vec<Waker> = lock(&self.shared.slots)
            .iter()
            .filter_map(|slot| lock(&*slot.upgrade()?).take())
            .collect();
        for waker in wakers {
            waker.wake();
        }
    }

    /// Tasks (handles) still alive, not counting the control itself.
    pub fn live(&self) -> usize {
        Arc::strong_count(&self.token) - 1
    }

    /// Waits until every `Drain` handle is dropped, or `grace` passes.
    /// Returns true when everything finished in time.
    pub async fn wait(&self, grace: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            if self.live() == 0 {
                return true;
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return false;
            }
            // A handle notifies just before its count drops, so re-check
            // on a short tick as well as on the notification.
            let tick = deadline.min(now + Duration::from_millis(20));
            let _ = tokio::time::timeout_at(tick, self.live.notified()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::task::Wake;

    use super::*;

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// A waker that counts its wakes.
    fn counting_waker() -> (Arc<Count>, Waker) {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        (count.clone(), Waker::from(count))
    }

    #[test]
    fn a_waiting_watch_is_woken_by_the_start() {
        let (control, drain) = channel();
        let watch = drain.watch();
        let (count, waker) = counting_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(watch.poll_drained(&mut cx).is_pending());
        // Polled again with the same waker: still one registration.
        assert!(watch.poll_drained(&mut cx).is_pending());
        assert!(!watch.is_draining());
        control.start();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert!(watch.is_draining());
        assert!(watch.poll_drained(&mut cx).is_ready());
        // A watch made after the start is drained at once.
        assert!(drain.watch().poll_drained(&mut cx).is_ready());
    }

    #[test]
    fn dropping_the_control_starts_the_drain() {
        let (control, drain) = channel();
        let watch = drain.watch();
        let (count, waker) = counting_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(watch.poll_drained(&mut cx).is_pending());
        drop(control);
        assert_eq!(
            count.0.load(Ordering::SeqCst),
            1,
            "the waiting watch was woken"
        );
        assert!(drain.is_draining() && watch.poll_drained(&mut cx).is_ready());
    }

    #[test]
    fn closed_connections_leave_no_slots_behind() {
        let (_control, drain) = channel();
        let kept: Vec<Watch> = (0..10).map(|_| drain.watch()).collect();
        for _ in 0..10_000 {
            drop(drain.watch());
        }
        let slots = lock(&drain.shared.slots).len();
        assert!(slots <= 2 * kept.len() + 16, "{slots} slots");
    }
}
