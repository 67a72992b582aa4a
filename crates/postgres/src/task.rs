//! Background work an adapter runs beside the requests, tied to a handle's lifetime.

/// A background task (a listener, a prober) of this crate: dropping it stops the task.
#[derive(Debug)]
pub struct Background(tokio::task::JoinHandle<()>);

impl Background {
    /// Runs `work` in a task of its own until it ends or this is dropped.
    pub(crate) fn spawn(work: impl Future<Output = ()> + Send + 'static) -> Self {
        Self(tokio::spawn(work))
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.0.abort();
    }
}
