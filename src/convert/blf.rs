//! Vector BLF (binary logging format of CANoe/CANalyzer), read and written from its
//! published descriptions (Vector's object layouts as python-can's and vector_blf's
//! documentation describe them; no code taken).
//!
//! Layout, all little-endian:
//!
//! - **File header**, 144 bytes: `LOGG`, header size (144), application id and version
//!   (4 bytes), BLF version (4 bytes), file size (u64), uncompressed size (u64: header
//!   plus every container's header and uncompressed data), object count (u32: objects
//!   inside the containers), objects read (u32), start and stop time as Windows
//!   `SYSTEMTIME` (8 × u16: year, month, weekday, day, hour, minute, second, ms; UTC, as
//!   python-can writes and reads it), zeros.
//! - **Objects**: a 16-byte base header (`LOBJ`, header size u16, header version u16,
//!   object size u32, object type u32), then for header version 1 flags u32 (1 = time in
//!   10 µs, 2 = in ns), client index u16, object version u16, time u64 (header size 32);
//!   version 2 adds an original time u64 (header size 40). The time counts from the file
//!   header's start. After an object come `size % 4` padding bytes.
//! - **LOG_CONTAINER** (type 10): base header, compression u16 (0 none, 2 zlib), 6
//!   reserved, uncompressed size u32, 4 reserved, then the data. The uncompressed data of
//!   consecutive containers is one stream of objects, which may straddle containers.
//!
//! Frame objects read: CAN_MESSAGE (1) and CAN_MESSAGE2 (86) (channel u16, flags u8 —
//! 0x01 Tx, 0x80 remote —, DLC u8, ID u32 with 0x80000000 for extended, 8 data bytes),
//! CAN_FD_MESSAGE (100) (channel u16, flags u8, DLC u8, ID u32, frame length u32, bit
//! count u8, FD flags u8: 0x01 EDL, 0x02 BRS, 0x04 ESI, valid bytes u8, 5 reserved, 64
//! data bytes), CAN_FD_MESSAGE_64 (101) (channel u8, DLC u8, valid bytes u8, …, ID
//! u32, …, flags u32: 0x10 remote, 0x1000 EDL, 0x2000 BRS, 0x4000 ESI, …, direction u8,
//! …, data), CAN_ERROR_EXT (73), CAN_FD_ERROR_64 (104). Every other object type is
//! skipped and counted ([`ReadStats::other_objects`]); APP_TEXT (65) objects with
//! canmc's loss notes are read back as loss events.
//!
//! Written: one LOG_CONTAINER per 128 KiB of objects (zlib, or stored with
//! [`BlfWriter::create`]'s `compress = false`), classic frames as CAN_MESSAGE (raw DLC
//! 9–15 kept), CAN FD frames as CAN_FD_MESSAGE_64, error frames as CAN_ERROR_EXT carrying
//! the SocketCAN error class as ID and the 8 error bytes as data (marked so that canmc
//! reads them back as such; an error object without the mark reads as a bus error,
//! class 0x80), losses as APP_TEXT objects. Times in ns from a start that is the first
//! event's time truncated to the millisecond (the `SYSTEMTIME` precision); an event
//! older than that start is written at the start (BLF times are unsigned). The header's
//! statistics are written at [`FrameWriter::finish`].
//!
//! Memory: the reader holds one container's compressed bytes and the uncompressed
//! stream of one container plus the unfinished object before it; the writer one
//! container. Both are bounded whatever the file's size.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::{channel_number, parse_loss_what, ConvertError, FrameWriter, ReadOptions, ReadStats};
use crate::event::Event;
use crate::frame::{dlc_to_len, flags, CanFrame, Channel, Direction, SenderAddr};

/// BLF object type: classic CAN frame.
pub const CAN_MESSAGE: u32 = 1;
/// BLF object type: CAN error frame (short form).
pub const CAN_ERROR: u32 = 2;
/// BLF object type: container of (compressed) objects.
pub const LOG_CONTAINER: u32 = 10;
/// BLF object type: application text.
pub const APP_TEXT: u32 = 65;
/// BLF object type: CAN error frame with details.
pub const CAN_ERROR_EXT: u32 = 73;
/// BLF object type: classic CAN frame with frame length and bit count.
pub const CAN_MESSAGE2: u32 = 86;
/// BLF object type: CAN FD frame (64 data bytes always stored).
pub const CAN_FD_MESSAGE: u32 = 100;
/// BLF object type: CAN FD frame (only the valid bytes stored).
pub const CAN_FD_MESSAGE_64: u32 = 101;
/// BLF object type: CAN FD error frame.
pub const CAN_FD_ERROR_64: u32 = 104;

const FILE_HEADER_SIZE: usize = 144;
const BASE_HEADER: usize = 16;
const V1_HEADER: usize = 32;
const CONTAINER_HEADER: usize = 16;
/// Uncompressed bytes per container, as Vector's tools and python-can write them.
const CONTAINER_SIZE: usize = 128 * 1024;
/// Largest container or object canmc reads whole; bigger ones are corrupt (containers)
/// or skipped in a stream (objects).
const MAX_CONTAINER: usize = 64 << 20;
const MAX_OBJECT: usize = 1 << 20;
/// Object header flag: time in ns (1 would be 10 µs).
const TIME_ONE_NANS: u32 = 2;
const TIME_TEN_MICS: u32 = 1;
const CAN_MSG_EXT: u32 = 0x8000_0000;
/// Marks a CAN_ERROR_EXT written by canmc (its reserved byte): the ID is the
/// SocketCAN error class and the data the error bytes.
const CANMC_ERROR_MARK: u8 = 0xC3;
/// CAN_ERROR_EXT `flagsExt` bit: the error happened on a frame this node sent.
const ERROR_EXT_TX: u16 = 0x20;
/// Application id in the file header (python-can writes 5, CANoe 1, CANalyzer 2).
const APPLICATION_ID: u8 = 0;

fn io_err(path: &Path) -> impl Fn(io::Error) -> ConvertError + '_ {
    move |source| ConvertError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([b[i], b[i + 1]])
}
fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}
fn u64_at(b: &[u8], i: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[i..i + 8]);
    u64::from_le_bytes(w)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01: (year, month, day).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// A `SYSTEMTIME` (UTC) for `ns`, to the millisecond; all zero for 0.
fn systemtime(ns: u64) -> [u16; 8] {
    if ns == 0 {
        return [0; 8];
    }
    let secs = (ns / 1_000_000_000) as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    [
        y as u16,
        m as u16,
        ((days + 4).rem_euclid(7)) as u16,
        d as u16,
        (rem / 3600) as u16,
        (rem / 60 % 60) as u16,
        (rem % 60) as u16,
        (ns % 1_000_000_000 / 1_000_000) as u16,
    ]
}

/// ns since the epoch of a `SYSTEMTIME` (UTC); 0 for an invalid or zero one.
fn systemtime_ns(t: [u16; 8]) -> u64 {
    let [y, mo, _, d, h, mi, s, ms] = t;
    if !(1970..=9999).contains(&y)
        || !(1..=12).contains(&mo)
        || !(1..=31).contains(&d)
        || h > 23
        || mi > 59
        || s > 60
        || ms > 999
    {
        return 0;
    }
    let days = days_from_civil(y as i64, mo as i64, d as i64);
    let secs = days * 86_400 + h as i64 * 3600 + mi as i64 * 60 + s as i64;
    // ns since 1970 in a u64 reach 2554: a later year reads as 0 (unknown).
    (secs as u64)
        .checked_mul(1_000_000_000)
        .and_then(|ns| ns.checked_add(ms as u64 * 1_000_000))
        .unwrap_or(0)
}

/// BLF channel number (1-based) of a frame's channel: python-can's
/// `channel2int(channel) + 1`, 1 without a number.
fn blf_channel(ch: &Channel) -> u16 {
    channel_number(ch).clamp(0, u16::MAX as i64) as u16
}

/// BLF writer (see the module documentation).
pub struct BlfWriter {
    out: BufWriter<File>,
    path: PathBuf,
    /// Objects not yet in a container.
    pending: Vec<u8>,
    /// A container's compressed bytes.
    packed: Vec<u8>,
    compress: Option<Compress>,
    objects: u32,
    uncompressed: u64,
    written: u64,
    start: Option<u64>,
    last_ns: u64,
}

impl std::fmt::Debug for BlfWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlfWriter")
            .field("path", &self.path)
            .field("objects", &self.objects)
            .field("compressed", &self.compress.is_some())
            .finish()
    }
}

impl BlfWriter {
    /// Creates `path` with a placeholder header (rewritten at `finish`). `compress`
    /// chooses zlib containers (what Vector's tools write) or stored ones.
    pub fn create(path: &Path, compress: bool) -> Result<BlfWriter, ConvertError> {
        let file = File::create(path).map_err(io_err(path))?;
        let mut w = BlfWriter {
            out: BufWriter::with_capacity(1 << 16, file),
            path: path.to_path_buf(),
            pending: Vec::with_capacity(CONTAINER_SIZE + 256),
            packed: Vec::with_capacity(CONTAINER_SIZE + CONTAINER_SIZE / 8 + 256),
            // zlib level 1 (Z_BEST_SPEED): 6 times less CPU than python-can's level 6 on
            // the benchmark's frames (0.06 against 0.37 s user for 200 000), docs/perf.md.
            compress: compress.then(|| Compress::new(Compression::new(1), true)),
            objects: 0,
            uncompressed: FILE_HEADER_SIZE as u64,
            written: 0,
            start: None,
            last_ns: 0,
        };
        let header = w.header();
        w.out.write_all(&header).map_err(io_err(path))?;
        w.written = FILE_HEADER_SIZE as u64;
        Ok(w)
    }

    fn header(&self) -> [u8; FILE_HEADER_SIZE] {
        let mut h = [0u8; FILE_HEADER_SIZE];
        h[0..4].copy_from_slice(b"LOGG");
        h[4..8].copy_from_slice(&(FILE_HEADER_SIZE as u32).to_le_bytes());
        h[8] = APPLICATION_ID;
        // BLF version 4.7.1.0 (what current CANoe writes; python-can writes 2.6.8.1).
        h[12..16].copy_from_slice(&[4, 7, 1, 0]);
        h[16..24].copy_from_slice(&self.written.to_le_bytes());
        h[24..32].copy_from_slice(&self.uncompressed.to_le_bytes());
        h[32..36].copy_from_slice(&self.objects.to_le_bytes());
        let start = self.start.unwrap_or(0);
        for (i, v) in systemtime(start)
            .iter()
            .chain(systemtime(self.last_ns.max(start)).iter())
            .enumerate()
        {
            h[40 + 2 * i..42 + 2 * i].copy_from_slice(&v.to_le_bytes());
        }
        h
    }

    /// Appends an object (header version 1, ns time) with `body` to the pending data.
    fn object(&mut self, kind: u32, ts: u64, body: &[u8]) -> Result<(), ConvertError> {
        let start = *self.start.get_or_insert(ts - ts % 1_000_000);
        self.last_ns = self.last_ns.max(ts);
        let size = V1_HEADER + body.len();
        let p = &mut self.pending;
        p.extend_from_slice(b"LOBJ");
        p.extend_from_slice(&(V1_HEADER as u16).to_le_bytes());
        p.extend_from_slice(&1u16.to_le_bytes());
        p.extend_from_slice(&(size as u32).to_le_bytes());
        p.extend_from_slice(&kind.to_le_bytes());
        p.extend_from_slice(&TIME_ONE_NANS.to_le_bytes());
        p.extend_from_slice(&0u16.to_le_bytes());
        p.extend_from_slice(&0u16.to_le_bytes());
        p.extend_from_slice(&ts.saturating_sub(start).to_le_bytes());
        p.extend_from_slice(body);
        p.resize(p.len() + size % 4, 0);
        self.objects += 1;
        while self.pending.len() >= CONTAINER_SIZE {
            self.container(CONTAINER_SIZE)?;
        }
        Ok(())
    }

    /// Writes the first `n` pending bytes as one container.
    fn container(&mut self, n: usize) -> Result<(), ConvertError> {
        let data = &self.pending[..n];
        let (method, body): (u16, &[u8]) = match self.compress.as_mut() {
            Some(c) => {
                c.reset();
                self.packed.clear();
                loop {
                    let consumed = c.total_in() as usize;
                    self.packed.reserve(n / 8 + 256);
                    let status = c
                        .compress_vec(&data[consumed..], &mut self.packed, FlushCompress::Finish)
                        .map_err(|e| ConvertError::Io {
                            path: self.path.clone(),
                            source: io::Error::other(e),
                        })?;
                    if status == Status::StreamEnd {
                        break;
                    }
                }
                (2, &self.packed)
            }
            None => (0, data),
        };
        let size = BASE_HEADER + CONTAINER_HEADER + body.len();
        let mut head = [0u8; BASE_HEADER + CONTAINER_HEADER];
        head[0..4].copy_from_slice(b"LOBJ");
        head[4..6].copy_from_slice(&(BASE_HEADER as u16).to_le_bytes());
        head[6..8].copy_from_slice(&1u16.to_le_bytes());
        head[8..12].copy_from_slice(&(size as u32).to_le_bytes());
        head[12..16].copy_from_slice(&LOG_CONTAINER.to_le_bytes());
        head[16..18].copy_from_slice(&method.to_le_bytes());
        head[24..28].copy_from_slice(&(n as u32).to_le_bytes());
        let err = io_err(&self.path);
        self.out.write_all(&head).map_err(&err)?;
        self.out.write_all(body).map_err(&err)?;
        self.out.write_all(&[0u8; 3][..size % 4]).map_err(&err)?;
        self.written += (size + size % 4) as u64;
        self.uncompressed += (BASE_HEADER + CONTAINER_HEADER + n) as u64;
        self.pending.drain(..n);
        Ok(())
    }

    fn note(&mut self, ts: u64, text: std::fmt::Arguments<'_>) -> Result<(), ConvertError> {
        let text = format!("canmc: {text}");
        let mut body = Vec::with_capacity(16 + text.len());
        body.extend_from_slice(&0u32.to_le_bytes());
        body.extend_from_slice(&0u32.to_le_bytes());
        body.extend_from_slice(&(text.len() as u32).to_le_bytes());
        body.extend_from_slice(&0u32.to_le_bytes());
        body.extend_from_slice(text.as_bytes());
        self.object(APP_TEXT, ts, &body)
    }
}

impl FrameWriter for BlfWriter {
    fn write_frame(&mut self, frame: &CanFrame) -> Result<(), ConvertError> {
        let channel = blf_channel(&frame.channel);
        let tx = frame.direction() == Direction::Tx;
        let ext = if frame.is_extended() { CAN_MSG_EXT } else { 0 };
        if frame.is_error() {
            let mut b = [0u8; 32];
            b[0..2].copy_from_slice(&channel.to_le_bytes());
            b[10] = 8;
            b[11] = CANMC_ERROR_MARK;
            if tx {
                b[20..22].copy_from_slice(&ERROR_EXT_TX.to_le_bytes());
            }
            b[16..20].copy_from_slice(&frame.id.to_le_bytes());
            b[24..24 + frame.len as usize].copy_from_slice(&frame.data[..frame.len as usize]);
            return self.object(CAN_ERROR_EXT, frame.timestamp_ns, &b);
        }
        if frame.is_fd() {
            let len = frame.len as usize;
            let mut b = [0u8; 40 + 64];
            b[0] = channel.min(255) as u8;
            b[1] = frame.dlc();
            b[2] = frame.len;
            b[4..8].copy_from_slice(&(frame.id | ext).to_le_bytes());
            let fl = 0x1000u32
                | if frame.brs() { 0x2000 } else { 0 }
                | if frame.esi() { 0x4000 } else { 0 };
            b[12..16].copy_from_slice(&fl.to_le_bytes());
            b[34] = tx as u8;
            b[40..40 + len].copy_from_slice(&frame.data[..len]);
            return self.object(CAN_FD_MESSAGE_64, frame.timestamp_ns, &b[..40 + len]);
        }
        let mut b = [0u8; 16];
        b[0..2].copy_from_slice(&channel.to_le_bytes());
        b[2] = (tx as u8) | if frame.is_remote() { 0x80 } else { 0 };
        b[3] = frame.dlc();
        b[4..8].copy_from_slice(&(frame.id | ext).to_le_bytes());
        b[8..8 + frame.payload().len()].copy_from_slice(frame.payload());
        self.object(CAN_MESSAGE, frame.timestamp_ns, &b)
    }

    fn write_loss(&mut self, sender: SenderAddr, lost: u64, ts: u64) -> Result<(), ConvertError> {
        self.note(ts, format_args!("{lost} datagrams lost from {sender:?}"))
    }

    fn write_kernel_drops(&mut self, count: u64, ts: u64) -> Result<(), ConvertError> {
        self.note(ts, format_args!("kernel dropped {count} datagrams"))
    }

    fn flush(&mut self) -> Result<(), ConvertError> {
        // Only whole containers go out; a flush closes the current one early.
        if !self.pending.is_empty() {
            self.container(self.pending.len())?;
        }
        self.out.flush().map_err(io_err(&self.path))
    }

    fn finish(mut self: Box<Self>) -> Result<(), ConvertError> {
        if !self.pending.is_empty() {
            self.container(self.pending.len())?;
        }
        let header = self.header();
        let err = io_err(&self.path);
        self.out.flush().map_err(&err)?;
        let file = self.out.get_mut();
        file.seek(SeekFrom::Start(0)).map_err(&err)?;
        file.write_all(&header).map_err(&err)?;
        file.sync_all().map_err(&err)
    }
}

/// What one object of the stream is, for the reader.
enum Item {
    Frame(CanFrame),
    Note(super::LossNote),
    /// A frame object that is not a valid frame.
    Bad(String),
    Other,
}

/// Decodes one whole object (`obj` holds exactly `size` bytes).
fn decode_object(obj: &[u8], start_ns: u64) -> Result<(u64, Item), String> {
    let header_size = u16_at(obj, 4) as usize;
    let version = u16_at(obj, 6);
    let kind = u32_at(obj, 12);
    let min_header = match version {
        1 => V1_HEADER,
        2 => V1_HEADER + 8,
        _ => return Ok((0, Item::Other)),
    };
    if header_size < min_header || header_size > obj.len() {
        return Err(format!(
            "object header of {header_size} bytes in an object of {}",
            obj.len()
        ));
    }
    let tflags = u32_at(obj, 16);
    let t = u64_at(obj, 24);
    let rel = if tflags == TIME_TEN_MICS {
        t.saturating_mul(10_000)
    } else {
        t
    };
    let ts = start_ns.saturating_add(rel);
    let b = &obj[header_size..];
    let short = |need: usize| {
        if b.len() < need {
            Err(format!(
                "object type {kind} of {} bytes is too short",
                obj.len()
            ))
        } else {
            Ok(())
        }
    };
    let item = match kind {
        CAN_MESSAGE | CAN_MESSAGE2 => {
            short(16)?;
            let channel = u16_at(b, 0);
            let fl = b[2];
            let dlc = b[3];
            let id = u32_at(b, 4);
            frame_or_bad(
                classic(
                    channel as i64,
                    fl & 0x80 != 0,
                    fl & 1 != 0,
                    dlc,
                    id,
                    &b[8..16],
                ),
                ts,
            )
        }
        CAN_FD_MESSAGE => {
            short(20 + 64)?;
            let channel = u16_at(b, 0);
            let fl = b[2];
            let dlc = b[3];
            let id = u32_at(b, 4);
            // b[8..12] frame length, b[12] bit count, b[14] valid data bytes (the DLC
            // gives the length).
            let fdf = b[13];
            if fdf & 1 == 0 {
                frame_or_bad(
                    classic(
                        channel as i64,
                        fl & 0x80 != 0,
                        fl & 1 != 0,
                        dlc,
                        id,
                        &b[20..28],
                    ),
                    ts,
                )
            } else {
                frame_or_bad(
                    fd(
                        channel as i64,
                        fdf & 2 != 0,
                        fdf & 4 != 0,
                        fl & 1 != 0,
                        dlc,
                        id,
                        &b[20..84],
                    ),
                    ts,
                )
            }
        }
        CAN_FD_MESSAGE_64 => {
            short(40)?;
            let channel = b[0];
            // b[2]: valid data bytes; the DLC gives the length.
            let dlc = b[1];
            let id = u32_at(b, 4);
            let fl = u32_at(b, 12);
            let tx = b[34] == 1;
            // Data follow the 40 fixed bytes, up to the extension data if any.
            let ext_off = b[35] as usize;
            let end = if ext_off != 0 && ext_off >= header_size + 40 {
                (ext_off - header_size).min(b.len())
            } else {
                b.len()
            };
            let data = &b[40..end.max(40)];
            if fl & 0x1000 == 0 {
                let mut d = [0u8; 8];
                let n = data.len().min(8);
                d[..n].copy_from_slice(&data[..n]);
                frame_or_bad(classic(channel as i64, fl & 0x10 != 0, tx, dlc, id, &d), ts)
            } else {
                let mut d = [0u8; 64];
                let n = data.len().min(64);
                d[..n].copy_from_slice(&data[..n]);
                frame_or_bad(
                    fd(
                        channel as i64,
                        fl & 0x2000 != 0,
                        fl & 0x4000 != 0,
                        tx,
                        dlc,
                        id,
                        &d,
                    ),
                    ts,
                )
            }
        }
        CAN_ERROR_EXT => {
            short(32)?;
            let channel = u16_at(b, 0);
            let mut f = bus_error(channel as i64);
            if u16_at(b, 20) & ERROR_EXT_TX != 0 {
                f.set_direction(Direction::Tx);
            }
            if b[11] == CANMC_ERROR_MARK && b[10] == 8 {
                let class = u32_at(b, 16);
                if class < crate::frame::EXT_ID_LIMIT {
                    f.id = class;
                    f.data[..8].copy_from_slice(&b[24..32]);
                }
            }
            f.timestamp_ns = ts;
            Item::Frame(f)
        }
        CAN_ERROR | CAN_FD_ERROR_64 => {
            short(2)?;
            let channel = if kind == CAN_ERROR {
                u16_at(b, 0) as i64
            } else {
                b[0] as i64
            };
            let mut f = bus_error(channel);
            f.timestamp_ns = ts;
            Item::Frame(f)
        }
        APP_TEXT => {
            if b.len() < 16 {
                Item::Other
            } else {
                let n = (u32_at(b, 8) as usize).min(b.len() - 16);
                let note = std::str::from_utf8(&b[16..16 + n])
                    .ok()
                    .and_then(|t| t.strip_prefix("canmc: "))
                    .and_then(parse_loss_what);
                note.map_or(Item::Other, Item::Note)
            }
        }
        _ => Item::Other,
    };
    Ok((ts, item))
}

fn frame_or_bad(r: Result<CanFrame, String>, ts: u64) -> Item {
    match r {
        Ok(mut f) => {
            f.timestamp_ns = ts;
            Item::Frame(f)
        }
        Err(e) => Item::Bad(e),
    }
}

fn channel_of(n: i64) -> Channel {
    Channel::int(n - 1)
}

fn bus_error(channel: i64) -> CanFrame {
    let mut f = CanFrame::EMPTY;
    f.flags = flags::ERROR | flags::EXTENDED;
    f.id = 0x80;
    f.len = 8;
    f.channel = channel_of(channel);
    f
}

fn classic(
    channel: i64,
    remote: bool,
    tx: bool,
    dlc: u8,
    id: u32,
    data: &[u8],
) -> Result<CanFrame, String> {
    if dlc > 15 {
        return Err(format!("DLC {dlc} is over 15"));
    }
    let mut f = CanFrame::EMPTY;
    f.id = id & !CAN_MSG_EXT;
    f.flags = if id & CAN_MSG_EXT != 0 {
        flags::EXTENDED
    } else {
        0
    };
    f.len = dlc.min(8);
    if dlc > 8 {
        f.raw_dlc = dlc;
    }
    if remote {
        f.flags |= flags::RTR;
    } else {
        f.data[..f.len as usize].copy_from_slice(&data[..f.len as usize]);
    }
    if tx {
        f.set_direction(Direction::Tx);
    }
    f.channel = channel_of(channel);
    f.validate().map_err(|e| e.to_string())?;
    Ok(f)
}

fn fd(
    channel: i64,
    brs: bool,
    esi: bool,
    tx: bool,
    dlc: u8,
    id: u32,
    data: &[u8],
) -> Result<CanFrame, String> {
    if dlc > 15 {
        return Err(format!("DLC {dlc} is over 15"));
    }
    let len = dlc_to_len(dlc) as usize;
    let mut fl = flags::FD;
    if id & CAN_MSG_EXT != 0 {
        fl |= flags::EXTENDED;
    }
    if brs {
        fl |= flags::BRS;
    }
    if esi {
        fl |= flags::ESI;
    }
    let mut f = CanFrame::new(id & !CAN_MSG_EXT, fl, &data[..len]).map_err(|e| e.to_string())?;
    if tx {
        f.set_direction(Direction::Tx);
    }
    f.channel = channel_of(channel);
    Ok(f)
}

/// The reader's state: the object stream (uncompressed container data) not yet used.
struct Stream {
    buf: Vec<u8>,
    /// Bytes of an over-long object still to drop from the stream.
    skip: usize,
    /// Objects taken from the stream so far (for error messages).
    objects: u64,
}

/// Reads the events of a BLF file in order (see the module documentation).
pub fn read(
    path: &Path,
    opts: ReadOptions,
    f: &mut dyn FnMut(&Event) -> bool,
) -> Result<ReadStats, ConvertError> {
    let file = File::open(path).map_err(io_err(path))?;
    let mut r = BufReader::with_capacity(1 << 16, file);
    let bad = |offset: u64, message: String| ConvertError::Parse {
        path: path.to_path_buf(),
        line: offset,
        message: format!("byte {offset}: {message}"),
    };
    let mut stats = ReadStats::default();
    let mut head = [0u8; FILE_HEADER_SIZE];
    let got = read_full(&mut r, &mut head[..8]).map_err(io_err(path))?;
    if got < 8 || &head[..4] != b"LOGG" {
        return Err(bad(0, "not a BLF file (no LOGG header)".into()));
    }
    let header_size = u32_at(&head, 4) as usize;
    if !(72..=4096).contains(&header_size) {
        return Err(bad(4, format!("file header of {header_size} bytes")));
    }
    let mut rest = vec![0u8; header_size - 8];
    if read_full(&mut r, &mut rest).map_err(io_err(path))? < rest.len() {
        return Err(bad(8, "file cut inside its header".into()));
    }
    head[8..8 + (FILE_HEADER_SIZE - 8).min(rest.len())]
        .copy_from_slice(&rest[..(FILE_HEADER_SIZE - 8).min(rest.len())]);
    let mut st = [0u16; 8];
    for (i, v) in st.iter_mut().enumerate() {
        *v = u16_at(&head, 40 + 2 * i);
    }
    let start_ns = systemtime_ns(st);

    let mut offset = header_size as u64;
    let mut stream = Stream {
        buf: Vec::with_capacity(2 * CONTAINER_SIZE),
        skip: 0,
        objects: 0,
    };
    let mut body = Vec::with_capacity(CONTAINER_SIZE);
    let mut inflate = Decompress::new(true);
    let mut events = 0u64;
    let mut stopped = false;
    // Hands the complete objects of the stream to `f`; `Err` on a corrupt stream.
    let mut drain = |stream: &mut Stream,
                     stats: &mut ReadStats,
                     events: &mut u64,
                     at: u64|
     -> Result<bool, ConvertError> {
        let mut pos = 0;
        let buf = &stream.buf;
        let result = loop {
            if stream.skip > 0 {
                let n = stream.skip.min(buf.len() - pos);
                stream.skip -= n;
                pos += n;
                if stream.skip > 0 {
                    break Ok(true);
                }
            }
            let avail = &buf[pos..];
            // Padding after an object: up to 3 bytes (some writers pad differently).
            let Some(sig) = avail.windows(4).take(8).position(|w| w == b"LOBJ") else {
                if avail.len() >= 11 {
                    break Err(bad(
                        at,
                        format!(
                            "object {} of the container stream has no LOBJ signature",
                            stream.objects + 1
                        ),
                    ));
                }
                break Ok(true);
            };
            let avail = &avail[sig..];
            if avail.len() < BASE_HEADER {
                pos += sig;
                break Ok(true);
            }
            let size = u32_at(avail, 8) as usize;
            if size < BASE_HEADER {
                break Err(bad(
                    at,
                    format!("object {} of {size} bytes", stream.objects + 1),
                ));
            }
            if size > MAX_OBJECT {
                // Too big to hold (no CAN object is): drop it as it streams by.
                stream.objects += 1;
                stats.other_objects += 1;
                pos += sig;
                stream.skip = size;
                continue;
            }
            if avail.len() < size {
                pos += sig;
                break Ok(true);
            }
            stream.objects += 1;
            let (ts, item) = match decode_object(&avail[..size], start_ns) {
                Ok(x) => x,
                Err(e) => break Err(bad(at, format!("object {}: {e}", stream.objects))),
            };
            pos += sig + size;
            let ev = match item {
                Item::Frame(fr) => Event::Frame(fr),
                Item::Note(n) => n.event(ts),
                Item::Other => {
                    stats.other_objects += 1;
                    continue;
                }
                Item::Bad(_) if opts.skip_bad => {
                    stats.skipped += 1;
                    continue;
                }
                Item::Bad(e) => {
                    break Err(bad(
                        at,
                        format!(
                            "object {}: {e} (use --skip-bad to skip such objects)",
                            stream.objects
                        ),
                    ))
                }
            };
            if !opts.offer(ts, &ev, events, f) {
                break Ok(false);
            }
        };
        stream.buf.drain(..pos);
        result
    };

    loop {
        let mut base = [0u8; BASE_HEADER];
        let n = read_full(&mut r, &mut base).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        // Padding between top-level objects (zeros) before the next signature.
        if base.iter().take(n).all(|&b| b == 0) && n < BASE_HEADER {
            break;
        }
        if n < BASE_HEADER {
            return Err(bad(offset, "file cut inside an object header".into()));
        }
        if &base[..4] != b"LOBJ" {
            return Err(bad(
                offset,
                "no LOBJ signature where an object starts".into(),
            ));
        }
        let size = u32_at(&base, 8) as usize;
        let kind = u32_at(&base, 12);
        if !(BASE_HEADER..=MAX_CONTAINER).contains(&size) {
            return Err(bad(offset, format!("object of {size} bytes")));
        }
        body.clear();
        body.resize(size - BASE_HEADER, 0);
        let got = read_full(&mut r, &mut body).map_err(io_err(path))?;
        let cut = got < body.len();
        body.truncate(got);
        if kind == LOG_CONTAINER {
            if body.len() < CONTAINER_HEADER {
                return Err(bad(offset, "file cut inside a container header".into()));
            }
            let method = u16_at(&body, 0);
            let plain = u32_at(&body, 8) as usize;
            if plain > MAX_CONTAINER {
                return Err(bad(offset, format!("container of {plain} bytes")));
            }
            let data = &body[CONTAINER_HEADER..];
            match method {
                0 => stream.buf.extend_from_slice(data),
                2 => {
                    inflate.reset(true);
                    let before = stream.buf.len();
                    stream.buf.reserve(plain);
                    let status =
                        inflate.decompress_vec(data, &mut stream.buf, FlushDecompress::Finish);
                    let produced = stream.buf.len() - before;
                    match status {
                        Ok(Status::StreamEnd) if produced == plain => {}
                        // A cut container gives what it holds, then the error below.
                        _ if cut => {}
                        Ok(_) => {
                            return Err(bad(
                                offset,
                                format!(
                                    "container holds {produced} bytes, its header says {plain}"
                                ),
                            ))
                        }
                        Err(e) => {
                            // zlib's checksum comes at the end, so bytes inflated before
                            // the damage was noticed may be wrong: none of them is used.
                            stream.buf.truncate(before);
                            return Err(bad(
                                offset,
                                format!(
                                    "corrupt zlib data in container: {e}; {events} events \
                                     before this container were read"
                                ),
                            ));
                        }
                    }
                }
                m => return Err(bad(offset, format!("container compression method {m}"))),
            }
            if !drain(&mut stream, &mut stats, &mut events, offset)? {
                stopped = true;
                break;
            }
        } else if !cut {
            // A top-level object outside any container.
            let mut whole = Vec::with_capacity(size);
            whole.extend_from_slice(&base);
            whole.extend_from_slice(&body);
            stream.buf.extend_from_slice(&whole);
            if !drain(&mut stream, &mut stats, &mut events, offset)? {
                stopped = true;
                break;
            }
        }
        if cut {
            return Err(bad(
                offset,
                format!(
                    "file cut inside an object of {size} bytes; {events} events before it were read"
                ),
            ));
        }
        offset += size as u64;
        let pad = size % 4;
        if pad > 0 {
            let mut p = [0u8; 3];
            let n = read_full(&mut r, &mut p[..pad]).map_err(io_err(path))?;
            offset += n as u64;
        }
    }
    let claimed = u64_at(&head, 16);
    if !stopped && claimed > offset {
        return Err(bad(
            offset,
            format!(
                "file cut: its header says {claimed} bytes; {events} events before the cut were read"
            ),
        ));
    }
    if !stopped && stream.buf.len() > 3 && stream.skip == 0 {
        return Err(bad(
            offset,
            format!(
                "the last container ends inside an object; {events} events before it were read"
            ),
        ));
    }
    stats.events = events;
    stats.stopped = stopped;
    Ok(stats)
}

/// Reads until `buf` is full or the file ends; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("canmc-blf-{}-{name}", std::process::id()))
    }

    fn read_all(path: &Path, skip_bad: bool) -> (Result<ReadStats, ConvertError>, Vec<Event>) {
        let mut got = Vec::new();
        let opts = ReadOptions {
            skip_bad,
            ..ReadOptions::default()
        };
        let r = read(path, opts, &mut |e| {
            got.push(*e);
            true
        });
        (r, got)
    }

    fn sample(n: usize) -> Vec<CanFrame> {
        let texts = [
            "123#DEADBEEF",
            "1ABCDEF0#R8_F",
            "7FF#1122334455667788_C",
            "123##3001122334455667788990011",
            "123##0",
            "20000084#0004000000000000",
            "000#",
            "12345678##1000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F",
        ];
        (0..n)
            .map(|i| {
                let mut f: CanFrame = texts[i % texts.len()].parse().unwrap();
                f.timestamp_ns = 1_700_000_000_123_456_789 + i as u64 * 1_001;
                f.channel = Channel::int((i % 3) as i64);
                if i % 2 == 1 {
                    f.set_direction(Direction::Tx);
                }
                f
            })
            .collect()
    }

    #[test]
    fn systemtime_both_ways() {
        let ns = 1_700_000_000_123_000_000;
        let st = systemtime(ns);
        assert_eq!(st, [2023, 11, 2, 14, 22, 13, 20, 123]);
        assert_eq!(systemtime_ns(st), ns);
        assert_eq!(systemtime_ns([0; 8]), 0);
        // Found by the blf_reader fuzz target: a year past 2554 overflowed.
        assert_eq!(systemtime_ns([9999, 12, 0, 31, 23, 59, 59, 999]), 0);
    }

    #[test]
    fn round_trip_compressed_and_stored_with_statistics() {
        for compress in [true, false] {
            let path = tmp(&format!("rt-{compress}.blf"));
            let frames = sample(20_000);
            let mut w = Box::new(BlfWriter::create(&path, compress).unwrap());
            for f in &frames {
                w.write_frame(f).unwrap();
            }
            w.write_loss(SenderAddr::NONE, 7, frames[100].timestamp_ns)
                .unwrap();
            w.finish().unwrap();
            let bytes = std::fs::read(&path).unwrap();
            assert_eq!(u64_at(&bytes, 16), bytes.len() as u64, "file size");
            assert_eq!(u32_at(&bytes, 32), 20_001, "object count");
            let (r, got) = read_all(&path, false);
            let stats = r.unwrap();
            assert_eq!(stats.events, 20_001);
            assert_eq!(stats.other_objects, 0);
            let got_frames: Vec<CanFrame> = got
                .iter()
                .filter_map(|e| match e {
                    Event::Frame(f) => Some(*f),
                    _ => None,
                })
                .collect();
            assert_eq!(got_frames.len(), frames.len());
            for (i, (g, w)) in got_frames.iter().zip(&frames).enumerate() {
                assert_eq!(g, w, "frame {i}");
            }
            assert!(got.iter().any(|e| matches!(e, Event::Loss { lost: 7, .. })));
            // Uncompressed size: header + per container 32 bytes + its data.
            let (mut at, mut plain) = (FILE_HEADER_SIZE, FILE_HEADER_SIZE as u64);
            while at + 32 <= bytes.len() {
                assert_eq!(&bytes[at..at + 4], b"LOBJ");
                let size = u32_at(&bytes, at + 8) as usize;
                plain += 32 + u32_at(&bytes, at + 24) as u64;
                at += size + size % 4;
            }
            assert_eq!(at, bytes.len());
            assert_eq!(u64_at(&bytes, 24), plain, "uncompressed size");
            let _ = std::fs::remove_file(&path);
        }
    }

    /// Every cut of a file yields a prefix of its frames, then an error; never a panic.
    #[test]
    fn truncation_yields_a_prefix_then_an_error() {
        let path = tmp("cut.blf");
        let frames = sample(12_000);
        let mut w = Box::new(BlfWriter::create(&path, true).unwrap());
        for f in &frames {
            w.write_frame(f).unwrap();
        }
        w.finish().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let cut = tmp("cut2.blf");
        let step = (bytes.len() / 97).max(1);
        for len in (0..bytes.len()).step_by(step).chain([bytes.len() - 1]) {
            std::fs::write(&cut, &bytes[..len]).unwrap();
            let (r, got) = read_all(&cut, false);
            assert!(
                r.is_err(),
                "cut at {len} of {} read as complete",
                bytes.len()
            );
            for (i, (g, w)) in got.iter().zip(&frames).enumerate() {
                assert_eq!(*g, Event::Frame(*w), "cut at {len}, frame {i}");
            }
        }
        // Damage inside a compressed container: the objects before it, then an error.
        let mut bad = bytes.clone();
        let mid = bytes.len() / 2;
        for b in &mut bad[mid..mid + 64] {
            *b ^= 0x5A;
        }
        std::fs::write(&cut, &bad).unwrap();
        let (r, got) = read_all(&cut, false);
        assert!(r.is_err());
        for (g, w) in got.iter().zip(&frames) {
            assert_eq!(*g, Event::Frame(*w));
        }
        let _ = std::fs::remove_file(&cut);
        let _ = std::fs::remove_file(&path);
    }

    /// Objects written by other tools: CAN_MESSAGE2, CAN_FD_MESSAGE, 10 µs times,
    /// header version 2, unknown objects skipped and counted, top-level objects.
    #[test]
    fn reads_other_object_kinds() {
        let path = tmp("kinds.blf");
        let mut w = BlfWriter::create(&path, false).unwrap();
        w.start = Some(1_000_000_000_000);
        let mut obj = |kind: u32, version: u16, tflags: u32, t: u64, body: &[u8]| {
            let hs = if version == 2 { 40 } else { 32 };
            let size = hs + body.len();
            let p = &mut w.pending;
            p.extend_from_slice(b"LOBJ");
            p.extend_from_slice(&(hs as u16).to_le_bytes());
            p.extend_from_slice(&version.to_le_bytes());
            p.extend_from_slice(&(size as u32).to_le_bytes());
            p.extend_from_slice(&kind.to_le_bytes());
            p.extend_from_slice(&tflags.to_le_bytes());
            p.extend_from_slice(&[0; 4]);
            p.extend_from_slice(&t.to_le_bytes());
            if version == 2 {
                p.extend_from_slice(&[0; 8]);
            }
            p.extend_from_slice(body);
            p.resize(p.len() + size % 4, 0);
        };
        let mut m2 = vec![0u8; 24];
        m2[0] = 2;
        m2[2] = 1;
        m2[3] = 2;
        m2[4..8].copy_from_slice(&0x8000_0123u32.to_le_bytes());
        m2[8] = 0xAA;
        m2[9] = 0xBB;
        obj(CAN_MESSAGE2, 1, TIME_TEN_MICS, 5, &m2);
        obj(999, 1, TIME_ONE_NANS, 6, &[1, 2, 3]);
        let mut fdm = vec![0u8; 84];
        fdm[0] = 1;
        fdm[3] = 9;
        fdm[4..8].copy_from_slice(&0x321u32.to_le_bytes());
        fdm[13] = 1 | 2;
        fdm[14] = 12;
        for i in 0..12 {
            fdm[20 + i] = i as u8;
        }
        obj(CAN_FD_MESSAGE, 2, TIME_ONE_NANS, 7, &fdm);
        let mut err = vec![0u8; 32];
        err[0] = 1;
        obj(CAN_ERROR_EXT, 1, TIME_ONE_NANS, 8, &err);
        let n = w.pending.len();
        w.container(n).unwrap();
        Box::new(w).finish().unwrap();
        let (r, got) = read_all(&path, false);
        let stats = r.unwrap();
        assert_eq!(stats.other_objects, 1);
        let texts: Vec<String> = got
            .iter()
            .map(|e| match e {
                Event::Frame(f) => f.to_string(),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(
            texts,
            [
                "00000123#AABB",
                "321##5000102030405060708090A0B",
                "20000080#0000000000000000"
            ]
        );
        let Event::Frame(first) = got[0] else {
            unreachable!()
        };
        assert_eq!(first.timestamp_ns, 1_000_000_050_000);
        assert_eq!(first.direction(), Direction::Tx);
        assert_eq!(first.channel, Channel::int(1));
        let _ = std::fs::remove_file(&path);
    }
}
