//! `.cmc` recordings: a crash-safe, append-only, memory-mapped capture format, its
//! [`Recorder`] and its zero-copy reader [`Recording`]. The byte layout is documented in
//! docs/cmc-format.md and defined in [`format`](mod@format).
//!
//! A recording is a sequence of preallocated segment files, `rec.cmc`, `rec.cmc.1`,
//! `rec.cmc.2`, … each self-contained (header, channel and sender tables, records).
//! Records are committed by a checksum word stored last with `Release` ordering, so after
//! `kill -9` a reader yields exactly the records written before it and never a torn one.
//!
//! ```no_run
//! use canmc::record::{Recorder, RecorderOptions, Recording, Record};
//! # fn main() -> Result<(), canmc::record::RecordError> {
//! let mut rec = Recorder::create("cap.cmc", RecorderOptions::default())?;
//! rec.write_frame(&"123#DEADBEEF".parse().unwrap())?;
//! rec.finish()?;
//!
//! let recording = Recording::open("cap.cmc")?;
//! for r in recording.iter() {
//!     if let Record::Frame(f) = r {
//!         println!("{} {:03X} {:02X?}", f.timestamp_ns(), f.id(), f.payload());
//!     }
//! }
//! # Ok(()) }
//! ```

use std::fmt;
use std::path::PathBuf;

pub mod format;
mod mapped;
mod reader;
mod writer;

pub use reader::{Corruption, End, FrameView, Record, Recording, Records, Stats};
pub use writer::{segment_path, Recorder, RecorderOptions, RecorderStats, SyncPolicy};

/// Everything that can go wrong writing or opening a recording. Each variant names the
/// file concerned.
#[derive(Debug)]
pub enum RecordError {
    /// A file operation failed (`op` is what was being done: create, open, truncate, …).
    Io {
        /// What was being done (create, open, truncate, …).
        op: &'static str,
        /// The file concerned.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The file system could not reserve a segment (typically ENOSPC: disk full). The
    /// recording stops; everything written before is readable.
    Preallocate {
        /// The file concerned.
        path: PathBuf,
        /// Bytes asked for.
        bytes: u64,
        /// What the OS said.
        source: std::io::Error,
    },
    /// `mmap` of a segment failed.
    Map {
        /// The file concerned.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The file does not start with the `.cmc` magic.
    NotARecording {
        /// The file.
        path: PathBuf,
    },
    /// A `.cmc` file of a format version this build does not read.
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The version it says it is.
        version: u16,
    },
    /// The segment header fails its checks; `what` says which.
    CorruptHeader {
        /// The file.
        path: PathBuf,
        /// Which check failed.
        what: &'static str,
    },
    /// [`RecorderOptions`] out of range; the text says which.
    InvalidOptions(&'static str),
    /// A frame with `len` > 64 cannot be recorded.
    InvalidFrame {
        /// The frame's length.
        len: u8,
    },
    /// A table was full even in a fresh segment (cannot happen with valid options).
    TableFull,
    /// The recorder stopped after an earlier error (its message) or was finished.
    Stopped {
        /// The earlier error's message, or why it was finished.
        cause: String,
    },
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use RecordError::*;
        match self {
            Io { op, path, source } => write!(f, "{op} {}: {source}", path.display()),
            Preallocate {
                path,
                bytes,
                source,
            } => write!(
                f,
                "cannot preallocate {bytes} bytes for recording segment {}: {source}; \
                 recording stopped, everything recorded before is readable",
                path.display()
            ),
            Map { path, source } => write!(
                f,
                "cannot memory-map recording segment {}: {source}",
                path.display()
            ),
            NotARecording { path } => {
                write!(f, "{} is not a .cmc recording (bad magic)", path.display())
            }
            UnsupportedVersion { path, version } => write!(
                f,
                "{} is .cmc format version {version}; this build reads version {}",
                path.display(),
                format::VERSION
            ),
            CorruptHeader { path, what } => {
                write!(
                    f,
                    "corrupt .cmc segment header in {}: {what}",
                    path.display()
                )
            }
            InvalidOptions(what) => write!(f, "invalid recorder options: {what}"),
            InvalidFrame { len } => write!(f, "cannot record a frame with len {len} (max 64)"),
            TableFull => f.write_str("recording channel/sender table full in a new segment"),
            Stopped { cause } => write!(f, "recording has stopped: {cause}"),
        }
    }
}

impl std::error::Error for RecordError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RecordError::Io { source, .. }
            | RecordError::Preallocate { source, .. }
            | RecordError::Map { source, .. } => Some(source),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
