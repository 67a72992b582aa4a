//! Log lines handed to a thread of their own in batches: a request appends its line to a shared
//! buffer, and the thread writes what has gathered in one call, when enough has or at least
//! every [`LINGER`].
//!
//! Written by hand because every request logs a line: tracing-appender's non-blocking writer
//! copies each line into an allocation of its own, sends it through a channel and wakes its
//! thread for it, which cost about as much as formatting the line. Here a line costs one
//! uncontended lock and a copy, and the thread wakes a few times a second under any load.

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;
use tracing_subscriber::fmt::MakeWriter;

/// The longest a line waits in the buffer while the load is light.
pub const LINGER: Duration = Duration::from_millis(50);

/// Gathered past this, the thread is woken at once rather than after [`LINGER`].
const BATCH_BYTES: usize = 64 * 1024;

/// The writer lines go to; cloned into every layer that writes them.
#[derive(Debug, Clone)]
pub struct LineWriter {
    shared: Arc<Shared>,
}

/// Stops the thread when dropped, once it has written every line gathered so far.
#[derive(Debug)]
pub struct Flusher {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Debug)]
struct Shared {
    pending: Mutex<Pending>,
    woken: Condvar,
    /// At most this many bytes wait; a line that would pass it is dropped.
    limit: usize,
    dropped: AtomicU64,
}

#[derive(Debug, Default)]
struct Pending {
    lines: Vec<u8>,
    closed: bool,
}

/// Starts the thread writing to `output`, holding at most `limit` bytes while `output` is slow
/// (a stalled log shipper, a full pipe): past that, lines are dropped and counted, and the
/// threads logging them go on.
///
/// # Errors
/// If the thread cannot be started.
pub fn spawn(
    output: impl Write + Send + 'static,
    limit: usize,
) -> io::Result<(LineWriter, Flusher)> {
    let shared = Arc::new(Shared {
        pending: Mutex::new(Pending::default()),
        woken: Condvar::new(),
        limit,
        dropped: AtomicU64::new(0),
    });
    let thread = {
        let shared = shared.clone();
        thread::Builder::new()
            .name("log-writer".to_owned())
            .spawn(move || shared.write_until_closed(output))?
    };
    let writer = LineWriter {
        shared: shared.clone(),
    };
    let flusher = Flusher {
        shared,
        thread: Some(thread),
    };
    Ok((writer, flusher))
}

impl LineWriter {
    /// Lines dropped so far because the buffer was full.
    pub fn dropped_lines(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }
}

impl Write for &LineWriter {
    /// Takes `line` whole, or drops it whole: a logging layer writes each line in one call.
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        let shared = &self.shared;
        let mut pending = shared.lock();
        if pending.lines.len() + line.len() > shared.limit {
            drop(pending);
            shared.dropped.fetch_add(1, Ordering::Relaxed);
            return Ok(line.len());
        }
        let before = pending.lines.len();
        pending.lines.extend_from_slice(line);
        let crossed = before < BATCH_BYTES && pending.lines.len() >= BATCH_BYTES;
        drop(pending);
        if crossed {
            shared.woken.notify_one();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LineWriter {
    type Writer = &'a LineWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The thread: swaps the gathered lines for an empty buffer and writes them, until closed
    /// with nothing left.
    fn write_until_closed(&self, mut output: impl Write) {
        let mut batch = Vec::with_capacity(BATCH_BYTES);
        loop {
            let closed = {
                let mut pending = self.lock();
                if pending.lines.len() < BATCH_BYTES && !pending.closed {
                    pending = self
                        .woken
                        .wait_timeout(pending, LINGER)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
                std::mem::swap(&mut pending.lines, &mut batch);
                pending.closed
            };
            if !batch.is_empty() {
                // Nowhere to report a failing stderr: its lines are lost, the service goes on.
                let _ = output.write_all(&batch).and_then(|()| output.flush());
                batch.clear();
            }
            if closed && self.lock().lines.is_empty() {
                return;
            }
        }
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.woken.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// Output that collects what is written, and blocks every write until released.
    #[derive(Clone)]
    struct Gate {
        written: Arc<Mutex<Vec<u8>>>,
        open: Arc<(Mutex<bool>, Condvar)>,
    }

    impl Gate {
        fn new(open: bool) -> Self {
            Self {
                written: Arc::default(),
                open: Arc::new((Mutex::new(open), Condvar::new())),
            }
        }

        fn open(&self) {
            *self.open.0.lock().unwrap() = true;
            self.open.1.notify_all();
        }

        fn text(&self) -> String {
            String::from_utf8(self.written.lock().unwrap().clone()).unwrap()
        }
    }

    impl Write for Gate {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let (open, opened) = &*self.open;
            drop(
                opened
                    .wait_while(open.lock().unwrap(), |open| !*open)
                    .unwrap(),
            );
            self.written.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn line(n: usize) -> String {
        format!("line {n:04}\n")
    }

    #[test]
    fn every_line_is_written_in_order_by_the_time_the_flusher_is_dropped() {
        let output = Gate::new(true);
        let (writer, flusher) = spawn(output.clone(), 1 << 20).unwrap();
        for n in 0..10_000 {
            (&writer).write_all(line(n).as_bytes()).unwrap();
        }
        drop(flusher);
        let expected: String = (0..10_000).map(line).collect();
        assert_eq!(output.text(), expected);
        assert_eq!(writer.dropped_lines(), 0);
    }

    #[test]
    fn lines_from_many_threads_arrive_whole() {
        let output = Gate::new(true);
        let (writer, flusher) = spawn(output.clone(), 1 << 20).unwrap();
        thread::scope(|scope| {
            for thread in 0..4 {
                let mut writer = &writer;
                scope.spawn(move || {
                    for n in 0..2_000 {
                        let text = format!("thread {thread} {}", line(n));
                        writer.write_all(text.as_bytes()).unwrap();
                    }
                });
            }
        });
        drop(flusher);
        let text = output.text();
        assert_eq!(text.lines().count(), 8_000);
        for thread in 0..4 {
            let own: Vec<&str> = text
                .lines()
                .filter(|l| l.starts_with(&format!("thread {thread} ")))
                .collect();
            let expected: Vec<String> = (0..2_000)
                .map(|n| format!("thread {thread} {}", line(n).trim_end()))
                .collect();
            assert_eq!(own, expected);
        }
    }

    /// A stalled stderr: writes go on without blocking, what does not fit is dropped and
    /// counted, and what fit is written once stderr moves again.
    #[test]
    fn a_stalled_output_drops_and_counts_what_does_not_fit_and_never_blocks_a_writer() {
        let output = Gate::new(false);
        let limit = 100 * line(0).len();
        let (writer, flusher) = spawn(output.clone(), limit).unwrap();
        // The thread takes the first batch and blocks writing it; then 100 lines fit.
        (&writer).write_all(b"first\n").unwrap();
        while !writer.shared.lock().lines.is_empty() {
            thread::yield_now();
        }
        let (done, finished) = mpsc::channel();
        let logging = writer.clone();
        thread::spawn(move || {
            for n in 0..1_000 {
                (&logging).write_all(line(n).as_bytes()).unwrap();
            }
            done.send(()).unwrap();
        });
        finished.recv_timeout(Duration::from_secs(30)).unwrap();
        assert_eq!(writer.dropped_lines(), 900);
        output.open();
        drop(flusher);
        let expected: String = std::iter::once("first\n".to_owned())
            .chain((0..100).map(line))
            .collect();
        assert_eq!(output.text(), expected);
    }
}
