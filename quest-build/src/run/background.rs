//! A boot that runs on its own thread while the caller talks to the system (over a
//! forwarded port: `boot_web`, `bench` web rows), watching its console as it arrives.
//!
//! The emulator is always ended: by the system itself, at the time limit, or by
//! [`Background::stop`] / dropping the [`Background`] (also when the caller panics), so a
//! failed check never leaves it running. Only that emulator, our own child, is ended.

use super::{boot, Machine, RunError, RunOptions, RunOutcome};
use crate::build::Workspace;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The console so far, shared with the boot's thread.
#[derive(Clone, Debug, Default)]
struct Console(Arc<Mutex<Vec<u8>>>);

impl Write for Console {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A running boot.
#[derive(Debug)]
pub struct Background {
    console: Console,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<RunOutcome, RunError>>>,
}

/// Why [`Background::wait_for`] gave up.
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    /// The system ended first.
    #[error("the system ended before printing {0:?}")]
    Ended(String),
    /// The time passed first.
    #[error("no {wanted:?} after {limit:?}")]
    TimedOut {
        /// The awaited text.
        wanted: String,
        /// How long it waited.
        limit: Duration,
    },
}

impl Background {
    /// Starts booting `iso` on `machine` with `opts` (its `echo` and `stop` are set here:
    /// the console is collected, and the stop flag is this boot's own).
    pub fn start(ws: &Workspace, iso: PathBuf, machine: Machine, opts: RunOptions) -> Self {
        let console = Console::default();
        let stop = Arc::new(AtomicBool::new(false));
        let opts = RunOptions {
            echo: true,
            stop: Some(Arc::clone(&stop)),
            ..opts
        };
        let ws = ws.clone();
        let mut sink = console.clone();
        let thread = std::thread::spawn(move || boot(&ws, &iso, machine, &opts, &mut sink));
        Self {
            console,
            stop,
            thread: Some(thread),
        }
    }

    /// Everything the console printed so far.
    pub fn console(&self) -> String {
        let bytes = self.console.0.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Waits until a console line contains `wanted` (polling every 50 ms).
    pub fn wait_for(&self, wanted: &str, limit: Duration) -> Result<(), WaitError> {
        let start = Instant::now();
        loop {
            if self.console().lines().any(|l| l.contains(wanted)) {
                return Ok(());
            }
            if self.thread.as_ref().is_none_or(JoinHandle::is_finished) {
                // One last look: the line may have come with the end.
                if self.console().lines().any(|l| l.contains(wanted)) {
                    return Ok(());
                }
                return Err(WaitError::Ended(wanted.to_owned()));
            }
            if start.elapsed() > limit {
                return Err(WaitError::TimedOut {
                    wanted: wanted.to_owned(),
                    limit,
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Asks the boot to stop now (the emulator is ended as at the time limit).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Waits for the boot to end by itself (or at its time limit) and returns how.
    pub fn finish(mut self) -> Result<RunOutcome, RunError> {
        let thread = self.thread.take().expect("finish is called once");
        thread
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }
}

impl Drop for Background {
    /// Stops a boot nobody waits for any more and waits for its thread, so the emulator
    /// is gone when this returns.
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.stop();
            let _ = thread.join();
        }
    }
}
