//! Graceful shutdown: one signal that every accept loop and connection
//! watches, and a count of the tasks still running so `wait` can tell when
//! the last in-flight request has finished.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};

/// A cloneable handle; each clone counts as one task still running.
#[derive(Debug)]
pub struct Drain {
    signal: watch::Receiver<bool>,
    live: Arc<Notify>,
    _token: Arc<()>,
}

impl Clone for Drain {
    fn clone(&self) -> Self {
        Drain {
            signal: self.signal.clone(),
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
    signal: watch::Sender<bool>,
    live: Arc<Notify>,
    token: Arc<()>,
}

pub fn channel() -> (DrainControl, Drain) {
    let (tx, rx) = watch::channel(false);
    let live = Arc::new(Notify::new());
    let token = Arc::new(());
    let drain = Drain {
        signal: rx,
        live: live.clone(),
        _token: token.clone(),
    };
    (
        DrainControl {
            signal: tx,
            live,
            token,
        },
        drain,
    )
}

impl Drain {
    /// A receiver whose `changed()` resolves when the drain starts.
    pub fn signal(&self) -> watch::Receiver<bool> {
        self.signal.clone()
    }

    pub fn is_draining(&self) -> bool {
        *self.signal.borrow()
    }

    /// A future that resolves when the drain starts, made once per
    /// connection and polled again at each wait: it stays registered with
    /// the signal in between, where a `changed()` per wait registered a
    /// waiter and removed it every time. Not to be polled once resolved.
    pub fn drained(&self) -> Drained {
        let mut signal = self.signal.clone();
        Box::pin(async move {
            // The control gone without a drain: none will come.
            if signal.wait_for(|&draining| draining).await.is_err() {
                std::future::pending::<()>().await;
            }
        })
    }
}

/// See [`Drain::drained`].
pub type Drained = Pin<Box<dyn Future<Output = ()> + Send>>;

impl DrainControl {
    pub fn start(&self) {
        let _ = self.signal.send(true);
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
