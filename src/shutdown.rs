//! The one shutdown signal every long-running loop selects on.

use tokio::sync::watch;

/// Fires once; clones see it too. Dropping the [`ShutdownTrigger`] also fires it.
#[derive(Debug, Clone)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
}

/// The sending half, held by whoever decides to stop (signal handler, test).
#[derive(Debug)]
pub struct ShutdownTrigger {
    tx: watch::Sender<bool>,
}

/// A connected pair.
pub fn channel() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger { tx }, Shutdown { rx })
}

impl ShutdownTrigger {
    pub fn fire(&self) {
        let _ = self.tx.send(true);
    }
}

impl Shutdown {
    /// Resolves when shutdown was requested (or the trigger dropped).
    pub async fn wait(&mut self) {
        while !*self.rx.borrow_and_update() {
            if self.rx.changed().await.is_err() {
                return;
            }
        }
    }

    pub fn is_fired(&self) -> bool {
        *self.rx.borrow()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn fires_all_clones() {
        let (t, s) = channel();
        let mut a = s.clone();
        let mut b = s;
        t.fire();
        a.wait().await;
        b.wait().await;
        assert!(a.is_fired());
    }

    #[tokio::test]
    async fn drop_fires() {
        let (t, mut s) = channel();
        drop(t);
        s.wait().await;
    }
}
