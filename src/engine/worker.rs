//! Pinned workers: [`Engine::spawn_worker`] runs a closure on every event of one
//! consumer, on a thread of its own pinned to a CPU ([`pin_current_thread`]).

use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::{ConsumerHandle, Engine};
use crate::event::Event;
pub use crate::sys::pin_current_thread;

impl Engine {
    /// Runs `f` on every event of `handle`, on a new thread (`canmc-worker-N`) pinned
    /// to `cpu` if given. A pinning failure does not stop the worker: it runs unpinned
    /// and [`WorkerHandle::pin_error`] says why. The worker ends when the engine has
    /// stopped and the ring is drained.
    ///
    /// # Panics
    ///
    /// If the OS cannot create a thread.
    pub fn spawn_worker(
        mut handle: ConsumerHandle,
        cpu: Option<usize>,
        mut f: impl FnMut(&Event) + Send + 'static,
    ) -> WorkerHandle {
        let (pin_tx, pin_rx) = mpsc::channel();
        let thread = thread::Builder::new()
            .name(format!("canmc-worker-{}", handle.index()))
            .spawn(move || {
                let pinned = match cpu {
                    Some(cpu) => pin_current_thread(cpu).map_err(|e| e.to_string()),
                    None => Ok(()),
                };
                let _ = pin_tx.send(pinned.err());
                let mut buf = [Event::default(); 64];
                loop {
                    let n = handle.pop_batch(&mut buf);
                    if n == 0 {
                        if handle.is_closed() {
                            break;
                        }
                        handle.wait(Duration::from_millis(100));
                        continue;
                    }
                    for ev in &buf[..n] {
                        f(ev);
                    }
                }
            })
            .expect("cannot spawn a worker thread");
        let pin_error = pin_rx.recv().unwrap_or(None);
        WorkerHandle {
            thread,
            pin_error,
            cpu,
        }
    }
}

/// A worker thread started by [`Engine::spawn_worker`].
#[derive(Debug)]
pub struct WorkerHandle {
    thread: JoinHandle<()>,
    pin_error: Option<String>,
    cpu: Option<usize>,
}

impl WorkerHandle {
    /// Why pinning to the requested CPU failed, if it did (the worker then runs
    /// unpinned).
    pub fn pin_error(&self) -> Option<String> {
        self.pin_error.clone()
    }

    /// The CPU the worker was asked to run on.
    pub fn cpu(&self) -> Option<usize> {
        self.cpu
    }

    /// True once the worker has returned.
    pub fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }

    /// Waits for the worker to end (after the engine stops and its ring is drained).
    /// `Err` carries the panic of `f`, if it panicked.
    pub fn join(self) -> thread::Result<()> {
        self.thread.join()
    }
}
