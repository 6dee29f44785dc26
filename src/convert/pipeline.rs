//! A writer on its own thread: events are copied into preallocated batches on the
//! caller's thread and written by another, so that reading one format and writing
//! another use two cores (`canmc convert`), and a writer's encoding never runs on a
//! receive thread (`record -o x.parquet`).

use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
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

/// The caller's side of a writer thread. Allocates nothing per event: batches go
/// round between the two threads.
#[derive(Debug)]
pub struct Pipelined {
    batch: Vec<Event>,
    batch_rows: usize,
    to_thread: Option<SyncSender<Message>>,
    free: Receiver<Vec<Event>>,
    thread: Option<JoinHandle<Result<(), ConvertError>>>,
    path: PathBuf,
}

impl Pipelined {
    /// Starts a thread named `name` writing to `sink`; `path` names the output in errors.
    pub(crate) fn spawn(
        name: &str,
        path: &Path,
        batch_rows: usize,
        mut sink: Box<dyn BatchSink>,
    ) -> Result<Pipelined, ConvertError> {
        let (to_thread, from_caller) = sync_channel::<Message>(BATCHES);
        let (to_caller, free) = sync_channel::<Vec<Event>>(BATCHES);
        for _ in 1..BATCHES {
            let _ = to_caller.send(Vec::with_capacity(batch_rows));
        }
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let mut result = Ok(());
                for message in from_caller {
                    match message {
                        Message::Events(mut batch) => {
                            if result.is_ok() {
                                result = sink.write(&batch);
                            }
                            batch.clear();
                            let _ = to_caller.send(batch);
                        }
                        Message::Flush => {
                            if result.is_ok() {
                                result = sink.flush();
                            }
                        }
                    }
                    // Stop taking batches after an error: the caller sees it on its
                    // next hand-over.
                    if let Err(e) = result {
                        return Err(e);
                    }
                }
                result.and_then(|()| sink.close())
            })
            .map_err(super::io_err(path))?;
        Ok(Pipelined {
            batch: Vec::with_capacity(batch_rows),
            batch_rows,
            to_thread: Some(to_thread),
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
        let Some(tx) = &self.to_thread else {
            return Ok(());
        };
        let empty = match self.free.recv() {
            Ok(b) => b,
            Err(_) => return Err(self.thread_failed()),
        };
        let full = std::mem::replace(&mut self.batch, empty);
        if tx.send(Message::Events(full)).is_err() {
            return Err(self.thread_failed());
        }
        Ok(())
    }

    /// The writer thread stopped early: its error.
    fn thread_failed(&mut self) -> ConvertError {
        self.to_thread = None;
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
        if let Some(tx) = &self.to_thread {
            if tx.send(Message::Flush).is_err() {
                return Err(self.thread_failed());
            }
        }
        Ok(())
    }
    fn finish(mut self: Box<Self>) -> Result<(), ConvertError> {
        if !self.batch.is_empty() {
            self.hand_over()?;
        }
        self.to_thread = None;
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
        self.to_thread = None;
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
