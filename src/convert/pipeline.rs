//! A writer on its own thread: events are copied into preallocated batches on the
//! caller's thread and written by another, so that reading one format and writing
//! another use two cores (`canmc convert`), and a writer's encoding never runs on a
//! receive thread (`record -o x.parquet`).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use super::{ConvertError, FrameWriter};
use crate::event::Event;
use crate::frame::{CanFrame, SenderAddr};

/// Events per batch handed to a plain writer's thread: 4 batches of 8 Ki events are
/// 4.5 MB in flight (Parquet takes 64 Ki, its columns are built a batch at a time).
const BATCH_ROWS: usize = 1 << 13;
/// Batches in flight between the caller and the writer thread.
const BATCHES: usize = 4;

/// What the writer thread does with the batches.
pub(crate) trait BatchSink: Send + 'static {
    /// Writes a batch of events.
    fn write(&mut self, events: &[Event]) -> Result<(), ConvertError>;
    /// Makes what was written so far reach the file (as [`FrameWriter::flush`]).
    fn flush(&mut self) -> Result<(), ConvertError>;
    /// Completes the output.
    fn close(self: Box<Self>) -> Result<(), ConvertError>;
}

enum Message {
    Events(Vec<Event>),
    Flush,
}

/// A bounded queue between two threads that never allocates after creation: its slots
/// are allocated up front and a blocked side sleeps on a condition variable (a futex).
/// std's channels register a waiter in a list the first times a side blocks, which
/// the allocation tests caught on the receive thread (`tests/lake_alloc.rs`).
struct Handoff<T> {
    state: Mutex<Slots<T>>,
    changed: Condvar,
}

struct Slots<T> {
    items: VecDeque<T>,
    capacity: usize,
    closed: bool,
}

impl<T> Handoff<T> {
    fn new(capacity: usize) -> Arc<Handoff<T>> {
        Arc::new(Handoff {
            state: Mutex::new(Slots {
                items: VecDeque::with_capacity(capacity),
                capacity,
                closed: false,
            }),
            changed: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Slots<T>> {
        // A panic while holding this lock leaves plain data behind: go on with it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for a free slot; gives the item back if the other side is gone.
    fn send(&self, item: T) -> Result<(), T> {
        let mut slots = self.lock();
        while slots.items.len() >= slots.capacity && !slots.closed {
            slots = self.changed.wait(slots).unwrap_or_else(|e| e.into_inner());
        }
        if slots.closed {
            return Err(item);
        }
        slots.items.push_back(item);
        self.changed.notify_all();
        Ok(())
    }

    /// Waits for an item; `None` once the queue is closed and empty.
    fn recv(&self) -> Option<T> {
        let mut slots = self.lock();
        loop {
            if let Some(item) = slots.items.pop_front() {
                self.changed.notify_all();
                return Some(item);
            }
            if slots.closed {
                return None;
            }
            slots = self.changed.wait(slots).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_all();
    }
}

/// Closes both queues when the writer thread ends, however it ends.
struct CloseOnExit(Arc<Handoff<Message>>, Arc<Handoff<Vec<Event>>>);

impl Drop for CloseOnExit {
    fn drop(&mut self) {
        self.0.close();
        self.1.close();
    }
}

/// The caller's side of a writer thread. Allocates nothing per event: batches go
/// round between the two threads.
pub struct Pipelined {
    batch: Vec<Event>,
    batch_rows: usize,
    to_thread: Arc<Handoff<Message>>,
    free: Arc<Handoff<Vec<Event>>>,
    thread: Option<JoinHandle<Result<(), ConvertError>>>,
    path: PathBuf,
}

impl std::fmt::Debug for Pipelined {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipelined")
            .field("path", &self.path)
            .field("batch_rows", &self.batch_rows)
            .field("buffered", &self.batch.len())
            .finish_non_exhaustive()
    }
}

impl Pipelined {
    /// Starts a thread named `name` writing to `sink`; `path` names the output in errors.
    pub(crate) fn spawn(
        name: &str,
        path: &Path,
        batch_rows: usize,
        mut sink: Box<dyn BatchSink>,
    ) -> Result<Pipelined, ConvertError> {
        // One slot more than batches: a flush never waits behind a full queue for long.
        let to_thread = Handoff::<Message>::new(BATCHES + 1);
        let free = Handoff::<Vec<Event>>::new(BATCHES);
        for _ in 1..BATCHES {
            let _ = free.send(Vec::with_capacity(batch_rows));
        }
        let queues = CloseOnExit(to_thread.clone(), free.clone());
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let queues = queues;
                // After an error the thread stops taking batches: the caller gets the
                // error at its next hand-over.
                while let Some(message) = queues.0.recv() {
                    match message {
                        Message::Events(mut batch) => {
                            let written = sink.write(&batch);
                            batch.clear();
                            let _ = queues.1.send(batch);
                            written?;
                        }
                        Message::Flush => sink.flush()?,
                    }
                }
                sink.close()
            })
            .map_err(super::io_err(path))?;
        Ok(Pipelined {
            batch: Vec::with_capacity(batch_rows),
            batch_rows,
            to_thread,
            free,
            thread: Some(thread),
            path: path.to_path_buf(),
        })
    }

    /// Runs `writer` on a thread of its own (see the module docs).
    pub fn new(path: &Path, writer: Box<dyn FrameWriter>) -> Result<Pipelined, ConvertError> {
        Pipelined::spawn(
            "canmc-writer",
            path,
            BATCH_ROWS,
            Box::new(EachEvent(writer)),
        )
    }

    fn push(&mut self, event: Event) -> Result<(), ConvertError> {
        self.batch.push(event);
        if self.batch.len() >= self.batch_rows {
            self.hand_over()?;
        }
        Ok(())
    }

    /// Sends the current batch to the writer thread and takes an empty one back.
    fn hand_over(&mut self) -> Result<(), ConvertError> {
        let Some(empty) = self.free.recv() else {
            return Err(self.thread_failed());
        };
        let full = std::mem::replace(&mut self.batch, empty);
        if self.to_thread.send(Message::Events(full)).is_err() {
            return Err(self.thread_failed());
        }
        Ok(())
    }

    /// The writer thread stopped early: its error.
    fn thread_failed(&mut self) -> ConvertError {
        self.to_thread.close();
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(Err(e))) => e,
            _ => ConvertError::Io {
                path: self.path.clone(),
                source: std::io::Error::other("the writer thread stopped"),
            },
        }
    }
}

impl FrameWriter for Pipelined {
    fn write_frame(&mut self, frame: &CanFrame) -> Result<(), ConvertError> {
        self.push(Event::Frame(*frame))
    }
    fn write_loss(&mut self, sender: SenderAddr, lost: u64, ts: u64) -> Result<(), ConvertError> {
        self.push(Event::Loss {
            sender,
            lost,
            timestamp_ns: ts,
        })
    }
    fn write_kernel_drops(&mut self, count: u64, ts: u64) -> Result<(), ConvertError> {
        self.push(Event::KernelDrops {
            count,
            timestamp_ns: ts,
        })
    }
    fn write_event(&mut self, event: &Event) -> Result<(), ConvertError> {
        self.push(*event)
    }
    /// Hands the events buffered so far to the writer thread, which then flushes.
    fn flush(&mut self) -> Result<(), ConvertError> {
        if !self.batch.is_empty() {
            self.hand_over()?;
        }
        if self.to_thread.send(Message::Flush).is_err() {
            return Err(self.thread_failed());
        }
        Ok(())
    }
    fn finish(mut self: Box<Self>) -> Result<(), ConvertError> {
        if !self.batch.is_empty() {
            self.hand_over()?;
        }
        self.to_thread.close();
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(r)) => r,
            _ => Err(ConvertError::Io {
                path: self.path.clone(),
                source: std::io::Error::other("the writer thread panicked"),
            }),
        }
    }
}

impl Drop for Pipelined {
    fn drop(&mut self) {
        self.to_thread.close();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Any [`FrameWriter`] as a [`BatchSink`].
struct EachEvent(Box<dyn FrameWriter>);

impl BatchSink for EachEvent {
    fn write(&mut self, events: &[Event]) -> Result<(), ConvertError> {
        events.iter().try_for_each(|e| self.0.write_event(e))
    }
    fn flush(&mut self) -> Result<(), ConvertError> {
        self.0.flush()
    }
    fn close(self: Box<Self>) -> Result<(), ConvertError> {
        self.0.finish()
    }
}
