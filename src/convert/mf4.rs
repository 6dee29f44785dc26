//! ASAM MDF 4.1 bus logging (`.mf4`), as data loggers, Vector tools, asammdf and
//! python-can write it: read and written by canmc's own code (why: docs/data-lake.md).
//!
//! Written layout (all little-endian, blocks 8-byte aligned):
//!
//! - `##ID` (64 bytes), `##HD` with the start time (the first event's second, UTC ns),
//!   `##FH` with canmc's tool name;
//! - three channel groups, each flagged as a bus event (`cg_flags` bit 1) with an `##SI`
//!   of source type BUS and bus type CAN: `CAN_DataFrame`, `CAN_ErrorFrame`,
//!   `CAN_RemoteFrame`. Each record starts with the master channel `t` (int64 ns since
//!   the start time, a linear conversion to seconds), then one composed channel named
//!   after the group whose members are `.BusChannel` (u8), `.ID` (u32, 29 bits),
//!   `.IDE`, `.DLC`, `.DataLength` (u8), `.DataBytes` (64 bytes; not in remote frames),
//!   `.Dir` (0 Rx, 1 Tx) and, for data and error frames, `.EDL`, `.BRS`, `.ESI`;
//! - [`Layout::Sorted`] (default): one data group per channel group; [`Layout::Unsorted`]:
//!   one data group whose records carry a 1-byte record ID, in arrival order;
//! - data in `##DT` blocks of about 1 MiB (or, with [`Mf4Options::compress`], `##DZ`
//!   blocks, transposed then deflated) listed by `##DL` (under an `##HL` when compressed);
//!   the metadata (an index: channel groups, data lists, data groups) is appended at
//!   every [`FrameWriter::flush`] and at [`FrameWriter::finish`], then linked from the
//!   header, so a writer killed at any moment leaves a file that opens.
//!
//! Reading takes sorted and unsorted files, `##DT`, `##DZ` (deflate, with or without
//! transposition), `##DL` chains and `##HL`, integer or float master channels with or
//! without a linear conversion, members at any bit position, and merges the groups by
//! time. Memory is bounded: one data block per data group (a `##DZ` may claim at most
//! [`MAX_BLOCK`] bytes). A damaged file yields the events before the damage, then one
//! error.
//!
//! What MF4 cannot carry: the sender address, losses, and a channel that is not an
//! integer 0–255 (none is written as 0, a name like `can1` as its number).

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::{io_err, ConvertError, FrameWriter, ReadOptions, ReadStats};
use crate::event::Event;
use crate::frame::{dlc_to_len, flags, CanFrame, Channel, ChannelRef, Direction, SenderAddr};

/// Largest decompressed `##DZ` block the reader accepts (bounded memory).
pub const MAX_BLOCK: u64 = 64 << 20;
/// Raw bytes per data block the writer aims at.
const BLOCK_TARGET: usize = 1 << 20;

/// How records are spread over data groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Layout {
    /// One data group per channel group (what asammdf saves).
    #[default]
    Sorted,
    /// One data group, records tagged with a 1-byte record ID in arrival order (what
    /// loggers write while recording).
    Unsorted,
}

/// Options of an [`Mf4Writer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Mf4Options {
    /// Write `##DZ` blocks (transposition + deflate) instead of `##DT`.
    pub compress: bool,
    /// Sorted or unsorted data groups.
    pub layout: Layout,
}

// ---------------------------------------------------------------------------------
// Record layouts

/// The three bus-logging groups, in file order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Data,
    Error,
    Remote,
}

const KINDS: [Kind; 3] = [Kind::Data, Kind::Error, Kind::Remote];

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Data => "CAN_DataFrame",
            Kind::Error => "CAN_ErrorFrame",
            Kind::Remote => "CAN_RemoteFrame",
        }
    }
    /// Record bytes after the 8-byte master.
    fn size(self) -> usize {
        match self {
            Kind::Data | Kind::Error => 76,
            Kind::Remote => 9,
        }
    }
    /// Members: name, byte offset (after the master), bits, data type.
    fn members(self) -> &'static [(&'static str, u32, u32, u8)] {
        const FULL: &[(&str, u32, u32, u8)] = &[
            ("BusChannel", 0, 8, DT_UINT),
            ("ID", 1, 29, DT_UINT),
            ("IDE", 5, 1, DT_UINT),
            ("DLC", 6, 4, DT_UINT),
            ("DataLength", 7, 8, DT_UINT),
            ("DataBytes", 8, 512, DT_BYTES),
            ("Dir", 72, 1, DT_UINT),
            ("EDL", 73, 1, DT_UINT),
            ("BRS", 74, 1, DT_UINT),
            ("ESI", 75, 1, DT_UINT),
        ];
        const REMOTE: &[(&str, u32, u32, u8)] = &[
            ("BusChannel", 0, 8, DT_UINT),
            ("ID", 1, 29, DT_UINT),
            ("IDE", 5, 1, DT_UINT),
            ("DLC", 6, 4, DT_UINT),
            ("DataLength", 7, 8, DT_UINT),
            ("Dir", 8, 1, DT_UINT),
        ];
        match self {
            Kind::Data | Kind::Error => FULL,
            Kind::Remote => REMOTE,
        }
    }
}

const DT_UINT: u8 = 0;
const DT_INT: u8 = 2;
const DT_FLOAT: u8 = 4;
const DT_BYTES: u8 = 10;
const CG_BUS_EVENT: u16 = 1 << 1;
const CG_VLSD: u16 = 1;
const CN_BUS_EVENT: u32 = 1 << 10;

/// The MF4 bus channel of a canmc channel: an integer 0–255, `canN`-style names by
/// their trailing number, anything else 0.
fn bus_channel(c: &Channel) -> u8 {
    match c.get() {
        ChannelRef::Int(n) => u8::try_from(n).unwrap_or(0),
        ChannelRef::Str(s) => {
            let digits = s.trim_start_matches(|ch: char| !ch.is_ascii_digit());
            digits.parse::<u8>().unwrap_or(0)
        }
        ChannelRef::None => 0,
    }
}

/// Encodes `frame` as a record of its group (after the master) into `out`.
fn encode(frame: &CanFrame, out: &mut [u8]) -> Kind {
    let kind = if frame.is_remote() {
        Kind::Remote
    } else if frame.is_error() {
        Kind::Error
    } else {
        Kind::Data
    };
    out[0] = bus_channel(&frame.channel);
    out[1..5].copy_from_slice(&frame.id.to_le_bytes());
    out[5] = u8::from(frame.is_extended());
    out[6] = frame.dlc();
    out[7] = frame.len;
    let tx = u8::from(frame.direction() == Direction::Tx);
    if kind == Kind::Remote {
        out[8] = tx;
    } else {
        out[8..72].copy_from_slice(&frame.data);
        out[72] = tx;
        out[73] = u8::from(frame.is_fd());
        out[74] = u8::from(frame.brs());
        out[75] = u8::from(frame.esi());
    }
    kind
}

// ---------------------------------------------------------------------------------
// Writer

/// Writes an MF4 bus-logging file. Memory: one ~1 MiB block buffer per group.
#[derive(Debug)]
pub struct Mf4Writer {
    out: BufWriter<File>,
    path: PathBuf,
    opts: Mf4Options,
    pos: u64,
    start_ns: Option<u64>,
    /// Per stream (3 sorted, 1 unsorted): the block being filled and the blocks written.
    streams: Vec<Stream>,
    cycles: [u64; 3],
    record: [u8; 96],
    scratch: Vec<u8>,
    /// The blocks every index links to, once written.
    statics: Option<Statics>,
    /// Records written since the last index.
    unindexed: bool,
}

#[derive(Debug, Default)]
struct Stream {
    buf: Vec<u8>,
    record_size: usize,
    /// File offsets of the data blocks written, and the raw bytes each holds.
    blocks: Vec<u64>,
    sizes: Vec<u64>,
}

/// Blocks written once and linked from every index: the file history, the CAN source,
/// and each group's channel tree (master time channel first) and acquisition name.
#[derive(Debug, Clone, Copy)]
struct Statics {
    fh: u64,
    si: u64,
    masters: [u64; 3],
    acquisition_names: [u64; 3],
}

impl Mf4Writer {
    /// Creates the file and writes its identification and header blocks.
    pub fn create(path: &Path, opts: Mf4Options) -> Result<Mf4Writer, ConvertError> {
        // Read back too: the data list needs the sizes of the blocks written.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(io_err(path))?;
        let sizes: Vec<usize> = match opts.layout {
            Layout::Sorted => KINDS.iter().map(|k| 8 + k.size()).collect(),
            Layout::Unsorted => vec![0],
        };
        let streams = sizes
            .into_iter()
            .map(|record_size| Stream {
                buf: Vec::with_capacity(BLOCK_TARGET + 128),
                record_size,
                // 4096 blocks are 4 GiB of records before the list grows.
                blocks: Vec::with_capacity(4096),
                sizes: Vec::with_capacity(4096),
            })
            .collect();
        let mut w = Mf4Writer {
            out: BufWriter::with_capacity(1 << 16, file),
            path: path.to_path_buf(),
            opts,
            pos: 0,
            start_ns: None,
            streams,
            cycles: [0; 3],
            record: [0; 96],
            scratch: Vec::new(),
            statics: None,
            unindexed: false,
        };
        // ID and a placeholder HD, rewritten at finish.
        let id = id_block(true);
        w.put(&id)?;
        let hd = hd_block(0, 0, 0);
        w.put(&hd)?;
        // On disk now: a recorder killed before its first index leaves an empty file
        // that opens, not a file too short to be MDF.
        w.out.flush().map_err(io_err(path))?;
        Ok(w)
    }

    fn put(&mut self, bytes: &[u8]) -> Result<u64, ConvertError> {
        let at = self.pos;
        self.out.write_all(bytes).map_err(io_err(&self.path))?;
        self.pos += bytes.len() as u64;
        Ok(at)
    }

    /// Writes stream `s`'s buffered records as one data block.
    fn flush_stream(&mut self, s: usize) -> Result<(), ConvertError> {
        if self.streams[s].buf.is_empty() {
            return Ok(());
        }
        let mut buf = std::mem::take(&mut self.streams[s].buf);
        let at = if self.opts.compress {
            let columns = match self.opts.layout {
                Layout::Sorted => self.streams[s].record_size,
                // Unsorted records differ in size: deflate only.
                Layout::Unsorted => 0,
            };
            let mut scratch = std::mem::take(&mut self.scratch);
            let block = dz_block(&buf, columns, &mut scratch);
            let at = self.put(&block)?;
            self.scratch = scratch;
            at
        } else {
            let mut header = [0u8; 24];
            header[..4].copy_from_slice(b"##DT");
            header[8..16].copy_from_slice(&(24 + buf.len() as u64).to_le_bytes());
            let at = self.put(&header)?;
            self.put(&buf)?;
            self.put(&[0u8; 8][..pad8(buf.len())])?;
            at
        };
        self.streams[s].blocks.push(at);
        self.streams[s].sizes.push(buf.len() as u64);
        buf.clear();
        self.streams[s].buf = buf;
        Ok(())
    }

    fn push_record(&mut self, kind: Kind, rel: i64) -> Result<(), ConvertError> {
        let k = kind as usize;
        self.cycles[k] += 1;
        self.unindexed = true;
        let body = kind.size();
        let s = match self.opts.layout {
            Layout::Sorted => k,
            Layout::Unsorted => 0,
        };
        let stream = &mut self.streams[s];
        if self.opts.layout == Layout::Unsorted {
            stream.buf.push(k as u8 + 1);
        }
        stream.buf.extend_from_slice(&rel.to_le_bytes());
        stream.buf.extend_from_slice(&self.record[..body]);
        if stream.buf.len() >= BLOCK_TARGET {
            self.flush_stream(s)?;
        }
        Ok(())
    }

    /// Writes the blocks every index links to (once).
    fn statics(&mut self) -> Result<Statics, ConvertError> {
        if let Some(statics) = self.statics {
            return Ok(statics);
        }
        let start = self.start_ns.unwrap_or(0);
        let fh_md = self.put(&text_block(
            b"##MD",
            concat!(
                "<FHcomment><TX>written by canmc</TX><tool_id>canmc</tool_id>",
                "<tool_vendor>canmc</tool_vendor><tool_version>",
                env!("CARGO_PKG_VERSION"),
                "</tool_version></FHcomment>"
            ),
        ))?;
        let mut fh = block_header(b"##FH", 56, 2);
        fh.extend_from_slice(&0u64.to_le_bytes());
        fh.extend_from_slice(&fh_md.to_le_bytes());
        fh.extend_from_slice(&start.to_le_bytes());
        fh.extend_from_slice(&[0u8; 8]);
        let fh_at = self.put(&fh)?;
        let can_tx = self.put(&text_block(b"##TX", "CAN"))?;
        let mut si = block_header(b"##SI", 56, 3);
        for link in [can_tx, can_tx, 0] {
            si.extend_from_slice(&link.to_le_bytes());
        }
        si.extend_from_slice(&[2, 2, 0, 0, 0, 0, 0, 0]); // BUS, CAN
        let si_at = self.put(&si)?;
        let t_name = self.put(&text_block(b"##TX", "t"))?;
        let unit_s = self.put(&text_block(b"##TX", "s"))?;
        let mut cc = block_header(b"##CC", 96, 4);
        cc.extend_from_slice(&[0u8; 32]);
        cc.extend_from_slice(&[1, 0, 0, 0, 0, 0, 2, 0]); // linear, 2 values
        cc.extend_from_slice(&[0u8; 16]);
        cc.extend_from_slice(&0f64.to_le_bytes());
        cc.extend_from_slice(&1e-9f64.to_le_bytes());
        let cc_at = self.put(&cc)?;
        let mut statics = Statics {
            fh: fh_at,
            si: si_at,
            masters: [0; 3],
            acquisition_names: [0; 3],
        };
        for kind in KINDS {
            // Members, written last-first so each links to the next.
            let mut next = 0u64;
            for &(member, off, bits, dt) in kind.members().iter().rev() {
                let name = self.put(&text_block(b"##TX", &format!("{}.{member}", kind.name())))?;
                let cn = cn_block(next, 0, name, 0, 0, 0, 0, 0, dt, 8 + off, bits, 0);
                next = self.put(&cn)?;
            }
            let name = self.put(&text_block(b"##TX", kind.name()))?;
            let parent = cn_block(
                0,
                next,
                name,
                si_at,
                0,
                0,
                0,
                0,
                DT_BYTES,
                8,
                kind.size() as u32 * 8,
                CN_BUS_EVENT,
            );
            let parent_at = self.put(&parent)?;
            let master = cn_block(
                parent_at, 0, t_name, 0, cc_at, unit_s, 2, 1, DT_INT, 0, 64, 0,
            );
            statics.masters[kind as usize] = self.put(&master)?;
            statics.acquisition_names[kind as usize] =
                self.put(&text_block(b"##TX", kind.name()))?;
        }
        self.statics = Some(statics);
        Ok(statics)
    }

    /// Writes every buffered record, then an index of the file so far (channel groups
    /// with their cycle counts, data lists, data groups) and links it from the header.
    ///
    /// Called at [`FrameWriter::finish`] and at each [`FrameWriter::flush`] (which
    /// `record` does every second): the header is rewritten only after the index it
    /// points to is in the file, so a recorder killed at any moment leaves a file that
    /// opens, with every record up to the last index. Each index costs about 1 KiB
    /// plus 16 bytes per data block; an earlier one stays in the file, unlinked.
    fn write_index(&mut self) -> Result<(), ConvertError> {
        for s in 0..self.streams.len() {
            self.flush_stream(s)?;
        }
        let statics = self.statics()?;
        let start = self.start_ns.unwrap_or(0);
        let mut cgs = [0u64; 3];
        for kind in KINDS {
            let record_id = match self.opts.layout {
                Layout::Sorted => 0,
                Layout::Unsorted => kind as u64 + 1,
            };
            let k = kind as usize;
            let mut cg = block_header(b"##CG", 104, 6);
            for link in [
                0,
                statics.masters[k],
                statics.acquisition_names[k],
                statics.si,
                0,
                0,
            ] {
                cg.extend_from_slice(&link.to_le_bytes());
            }
            cg.extend_from_slice(&record_id.to_le_bytes());
            cg.extend_from_slice(&self.cycles[k].to_le_bytes());
            cg.extend_from_slice(&CG_BUS_EVENT.to_le_bytes());
            cg.extend_from_slice(&0u16.to_le_bytes());
            cg.extend_from_slice(&0u32.to_le_bytes());
            cg.extend_from_slice(&(8 + kind.size() as u32).to_le_bytes());
            cg.extend_from_slice(&0u32.to_le_bytes());
            cgs[k] = self.put(&cg)?;
        }
        // Data lists.
        let mut data_links = Vec::new();
        for s in 0..self.streams.len() {
            let stream = &self.streams[s];
            let n = stream.blocks.len() as u64;
            if n == 0 {
                data_links.push(0);
                continue;
            }
            // A list with "not equal length" blocks: the offset of each block's data
            // in the stream follows the links.
            let mut dl = block_header(b"##DL", 24 + 8 * (n + 1) + 8 + 8 * n, n + 1);
            dl.extend_from_slice(&0u64.to_le_bytes());
            for b in &stream.blocks {
                dl.extend_from_slice(&b.to_le_bytes());
            }
            dl.extend_from_slice(&[0, 0, 0, 0]);
            dl.extend_from_slice(&(n as u32).to_le_bytes());
            let mut offset = 0u64;
            for size in &stream.sizes {
                dl.extend_from_slice(&offset.to_le_bytes());
                offset += size;
            }
            let dl_at = self.put(&dl)?;
            if self.opts.compress {
                let mut hl = block_header(b"##HL", 40, 1);
                hl.extend_from_slice(&dl_at.to_le_bytes());
                hl.extend_from_slice(&0u16.to_le_bytes()); // the DL has offsets
                hl.push(u8::from(self.opts.layout == Layout::Sorted)); // 1: transposed
                hl.extend_from_slice(&[0u8; 5]);
                data_links.push(self.put(&hl)?);
            } else {
                data_links.push(dl_at);
            }
        }
        // Data groups, last-first.
        let mut next_dg = 0u64;
        match self.opts.layout {
            Layout::Sorted => {
                for k in (0..3).rev() {
                    next_dg = self.put(&dg_block(next_dg, cgs[k], data_links[k], 0))?;
                }
            }
            Layout::Unsorted => {
                // Chain the three CGs under one DG.
                self.out.flush().map_err(io_err(&self.path))?;
                for k in 0..2 {
                    self.patch(cgs[k] + 24, cgs[k + 1])?;
                }
                next_dg = self.put(&dg_block(0, cgs[0], data_links[0], 1))?;
            }
        }
        self.out.flush().map_err(io_err(&self.path))?;
        // The header, now with its links and start time; the ID marked finalized.
        let mut hd = hd_block(next_dg, statics.fh, start);
        hd.truncate(104);
        self.write_at(64, &hd)?;
        self.write_at(0, &id_block(false))?;
        self.unindexed = false;
        Ok(())
    }

    fn patch(&mut self, at: u64, value: u64) -> Result<(), ConvertError> {
        self.write_at(at, &value.to_le_bytes())
    }

    fn write_at(&mut self, at: u64, bytes: &[u8]) -> Result<(), ConvertError> {
        self.out.flush().map_err(io_err(&self.path))?;
        self.out
            .get_ref()
            .write_all_at(bytes, at)
            .map_err(io_err(&self.path))
    }
}

impl FrameWriter for Mf4Writer {
    fn write_frame(&mut self, frame: &CanFrame) -> Result<(), ConvertError> {
        let start = *self
            .start_ns
            .get_or_insert(frame.timestamp_ns / 1_000_000_000 * 1_000_000_000);
        let rel = frame.timestamp_ns.wrapping_sub(start) as i64;
        let mut record = self.record;
        let kind = encode(frame, &mut record);
        self.record = record;
        self.push_record(kind, rel)
    }
    /// Makes the file whole up to here (see `write_index`), when records came since
    /// the last time.
    fn flush(&mut self) -> Result<(), ConvertError> {
        if self.unindexed && self.start_ns.is_some() {
            self.write_index()?;
        }
        self.out.flush().map_err(io_err(&self.path))
    }
    fn finish(mut self: Box<Self>) -> Result<(), ConvertError> {
        self.write_index()?;
        self.out.flush().map_err(io_err(&self.path))?;
        self.out.get_ref().sync_all().map_err(io_err(&self.path))
    }
}

fn pad8(n: usize) -> usize {
    (8 - n % 8) % 8
}

fn block_header(id: &[u8; 4], len: u64, links: u64) -> Vec<u8> {
    let mut b = Vec::with_capacity((len as usize).min(1 << 16));
    b.extend_from_slice(id);
    b.extend_from_slice(&[0; 4]);
    b.extend_from_slice(&len.to_le_bytes());
    b.extend_from_slice(&links.to_le_bytes());
    b
}

fn id_block(unfinished: bool) -> Vec<u8> {
    let mut b = Vec::with_capacity(64);
    b.extend_from_slice(b"MDF     4.10    canmc   ");
    b.extend_from_slice(&[0; 4]);
    b.extend_from_slice(&410u16.to_le_bytes());
    b.extend_from_slice(&[0; 30]);
    // Unfinalized: "update of cg_cycle_count / dl / dt length required" (bits 0, 1).
    b.extend_from_slice(&(if unfinished { 3u16 } else { 0 }).to_le_bytes());
    b.extend_from_slice(&0u16.to_le_bytes());
    if unfinished {
        b[0..8].copy_from_slice(b"UnFinMF ");
    }
    b
}

fn hd_block(first_dg: u64, fh: u64, start_ns: u64) -> Vec<u8> {
    let mut b = block_header(b"##HD", 104, 6);
    for link in [first_dg, fh, 0, 0, 0, 0] {
        b.extend_from_slice(&link.to_le_bytes());
    }
    b.extend_from_slice(&start_ns.to_le_bytes());
    b.extend_from_slice(&0i16.to_le_bytes());
    b.extend_from_slice(&0i16.to_le_bytes());
    b.extend_from_slice(&[0, 0, 0, 0]); // UTC, no offsets
    b.extend_from_slice(&[0u8; 16]);
    b
}

fn text_block(id: &[u8; 4], text: &str) -> Vec<u8> {
    let n = text.len() + 1;
    let len = 24 + n + pad8(n);
    let mut b = block_header(id, len as u64, 0);
    b.extend_from_slice(text.as_bytes());
    b.resize(len, 0);
    b
}

fn dg_block(next: u64, cg: u64, data: u64, rec_id_len: u8) -> Vec<u8> {
    let mut b = block_header(b"##DG", 64, 4);
    for link in [next, cg, data, 0] {
        b.extend_from_slice(&link.to_le_bytes());
    }
    b.push(rec_id_len);
    b.extend_from_slice(&[0; 7]);
    b
}

#[allow(clippy::too_many_arguments)]
fn cn_block(
    next: u64,
    composition: u64,
    name: u64,
    source: u64,
    conversion: u64,
    unit: u64,
    cn_type: u8,
    sync: u8,
    data_type: u8,
    byte_offset: u32,
    bits: u32,
    flags: u32,
) -> Vec<u8> {
    let mut b = block_header(b"##CN", 160, 8);
    for link in [next, composition, name, source, conversion, 0, unit, 0] {
        b.extend_from_slice(&link.to_le_bytes());
    }
    b.extend_from_slice(&[cn_type, sync, data_type, 0]);
    b.extend_from_slice(&byte_offset.to_le_bytes());
    b.extend_from_slice(&bits.to_le_bytes());
    b.extend_from_slice(&flags.to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes()); // invalidation bit
    b.extend_from_slice(&[0, 0, 0, 0]); // precision, reserved, attachments
    b.extend_from_slice(&[0u8; 48]);
    b
}

/// A `##DZ` block of `raw`: transposed by `columns` (when > 0), then zlib-deflated.
fn dz_block(raw: &[u8], columns: usize, scratch: &mut Vec<u8>) -> Vec<u8> {
    let input: &[u8] = if columns > 1 && raw.len() >= columns {
        let rows = raw.len() / columns;
        scratch.clear();
        scratch.resize(raw.len(), 0);
        for (r, rec) in raw[..rows * columns].chunks_exact(columns).enumerate() {
            for (c, &byte) in rec.iter().enumerate() {
                scratch[c * rows + r] = byte;
            }
        }
        scratch[rows * columns..].copy_from_slice(&raw[rows * columns..]);
        scratch
    } else {
        raw
    };
    let mut enc = flate2::write::ZlibEncoder::new(
        Vec::with_capacity(raw.len() / 4),
        flate2::Compression::new(3),
    );
    enc.write_all(input).expect("writing to a Vec");
    let zipped = enc.finish().expect("writing to a Vec");
    let len = 48 + zipped.len();
    let mut b = block_header(b"##DZ", len as u64, 0);
    b.extend_from_slice(b"DT");
    b.push(if columns > 1 && raw.len() >= columns {
        1
    } else {
        0
    });
    b.push(0);
    b.extend_from_slice(&(columns as u32).to_le_bytes());
    b.extend_from_slice(&(raw.len() as u64).to_le_bytes());
    b.extend_from_slice(&(zipped.len() as u64).to_le_bytes());
    b.extend_from_slice(&zipped);
    b.resize(len + pad8(len), 0);
    b
}

// ---------------------------------------------------------------------------------
// Reader

/// Why an MF4 file could not be read further (one line, with where).
type Bad = String;

/// The file, read block by block with bounds checks.
struct Src {
    file: File,
    len: u64,
}

/// A block's header, links and (for metadata blocks) data section.
struct Block {
    id: [u8; 4],
    links: Vec<u64>,
    data: Vec<u8>,
    at: u64,
    len: u64,
}

/// Largest metadata block read whole (links + data).
const MAX_META: u64 = 1 << 20;
/// Most blocks of one kind walked in a chain (guards against loops).
const MAX_CHAIN: usize = 1 << 16;

impl Src {
    fn read(&self, at: u64, buf: &mut [u8]) -> Result<(), Bad> {
        if at
            .checked_add(buf.len() as u64)
            .is_none_or(|end| end > self.len)
        {
            return Err(format!(
                "block at byte {at} runs past the end of the file ({} bytes)",
                self.len
            ));
        }
        self.file
            .read_exact_at(buf, at)
            .map_err(|e| format!("reading byte {at}: {e}"))
    }

    /// The header of the block at `at`, checked to lie inside the file.
    fn head(&self, at: u64) -> Result<([u8; 4], u64, u64), Bad> {
        let mut h = [0u8; 24];
        self.read(at, &mut h)?;
        let id: [u8; 4] = h[..4].try_into().expect("4 bytes");
        if &id[..2] != b"##" {
            return Err(format!("no block at byte {at}"));
        }
        let len = u64::from_le_bytes(h[8..16].try_into().expect("8 bytes"));
        let links = u64::from_le_bytes(h[16..24].try_into().expect("8 bytes"));
        if len < 24 || links > (len - 24) / 8 || at.checked_add(len).is_none_or(|e| e > self.len) {
            return Err(format!(
                "{} block at byte {at} claims {len} bytes and {links} links (file: {} bytes)",
                String::from_utf8_lossy(&id),
                self.len
            ));
        }
        Ok((id, len, links))
    }

    /// A metadata block, whole.
    fn block(&self, at: u64, want: &[u8; 4]) -> Result<Block, Bad> {
        let (id, len, links) = self.head(at)?;
        if &id != want {
            return Err(format!(
                "byte {at}: expected a {} block, found {}",
                String::from_utf8_lossy(want),
                String::from_utf8_lossy(&id)
            ));
        }
        if len > MAX_META {
            return Err(format!(
                "{} block at byte {at} is {len} bytes",
                String::from_utf8_lossy(&id)
            ));
        }
        let mut body = vec![0u8; (len - 24) as usize];
        self.read(at + 24, &mut body)?;
        let links_bytes = links as usize * 8;
        let links_v = body[..links_bytes]
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect();
        Ok(Block {
            id,
            links: links_v,
            data: body[links_bytes..].to_vec(),
            at,
            len,
        })
    }

    fn text(&self, at: u64) -> Result<String, Bad> {
        if at == 0 {
            return Ok(String::new());
        }
        let (id, _, _) = self.head(at)?;
        let b = self.block(at, if &id == b"##MD" { b"##MD" } else { b"##TX" })?;
        let end = b.data.iter().position(|&c| c == 0).unwrap_or(b.data.len());
        Ok(String::from_utf8_lossy(&b.data[..end]).into_owned())
    }
}

impl Block {
    fn link(&self, i: usize) -> u64 {
        self.links.get(i).copied().unwrap_or(0)
    }
    fn u64_at(&self, off: usize) -> Result<u64, Bad> {
        self.data
            .get(off..off + 8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
            .ok_or_else(|| self.short())
    }
    fn u32_at(&self, off: usize) -> Result<u32, Bad> {
        self.data
            .get(off..off + 4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
            .ok_or_else(|| self.short())
    }
    fn u8_at(&self, off: usize) -> Result<u8, Bad> {
        self.data.get(off).copied().ok_or_else(|| self.short())
    }
    fn f64_at(&self, off: usize) -> Result<f64, Bad> {
        Ok(f64::from_bits(self.u64_at(off)?))
    }
    fn short(&self) -> Bad {
        format!(
            "{} block at byte {} is too short ({} bytes)",
            String::from_utf8_lossy(&self.id),
            self.at,
            self.len
        )
    }
}

/// Where a value sits in a record.
#[derive(Debug, Clone, Copy, Default)]
struct Field {
    byte: usize,
    bit: u8,
    bits: u32,
    data_type: u8,
    present: bool,
}

impl Field {
    fn end(&self) -> usize {
        self.byte + (self.bit as usize + self.bits as usize).div_ceil(8)
    }

    fn uint(&self, rec: &[u8]) -> u64 {
        if !self.present {
            return 0;
        }
        let n = (self.bit as usize + self.bits as usize).div_ceil(8).min(8);
        let mut le = [0u8; 8];
        le[..n].copy_from_slice(&rec[self.byte..self.byte + n]);
        let v = u64::from_le_bytes(le) >> self.bit;
        if self.bits >= 64 {
            v
        } else {
            v & ((1u64 << self.bits) - 1)
        }
    }
}

/// The master channel: where, its type and its conversion to seconds.
#[derive(Debug, Clone, Copy)]
struct Master {
    field: Field,
    /// phys = a * raw + b (seconds).
    a: f64,
    b: f64,
}

impl Master {
    /// ns since the start time.
    fn ns(&self, rec: &[u8]) -> i64 {
        let raw = self.field.uint(rec);
        let f = &self.field;
        if f.data_type == DT_FLOAT {
            let v = if f.bits == 32 {
                f32::from_bits(raw as u32) as f64
            } else {
                f64::from_bits(raw)
            };
            return ((self.a * v + self.b) * 1e9).round() as i64;
        }
        let v = if f.data_type == DT_INT && f.bits < 64 && f.bits > 0 {
            let shift = 64 - f.bits;
            ((raw << shift) as i64) >> shift
        } else {
            raw as i64
        };
        if self.a == 1e-9 && self.b == 0.0 {
            return v;
        }
        ((self.a * v as f64 + self.b) * 1e9).round() as i64
    }
}

/// A CAN bus-logging channel group's record layout.
#[derive(Debug, Clone)]
struct Group {
    kind: Option<Kind>,
    record_id: u64,
    size: usize,
    vlsd: bool,
    master: Option<Master>,
    f: [Field; 10],
}

const BUS: usize = 0;
const ID: usize = 1;
const IDE: usize = 2;
const DLC: usize = 3;
const DLEN: usize = 4;
const BYTES: usize = 5;
const DIR: usize = 6;
const EDL: usize = 7;
const BRS: usize = 8;
const ESI: usize = 9;
const MEMBERS: [&str; 10] = [
    "BusChannel",
    "ID",
    "IDE",
    "DLC",
    "DataLength",
    "DataBytes",
    "Dir",
    "EDL",
    "BRS",
    "ESI",
];

fn read_field(cn: &Block) -> Result<Field, Bad> {
    Ok(Field {
        byte: cn.u32_at(4)? as usize,
        bit: cn.u8_at(3)? & 7,
        bits: cn.u32_at(8)?,
        data_type: cn.u8_at(2)?,
        present: true,
    })
}

fn read_group(src: &Src, cg: &Block) -> Result<Group, Bad> {
    let mut g = Group {
        kind: None,
        record_id: cg.u64_at(0)?,
        size: cg.u32_at(20)? as usize + cg.u32_at(24)? as usize,
        vlsd: cg
            .data
            .get(16..18)
            .is_some_and(|f| u16::from_le_bytes([f[0], f[1]]) & CG_VLSD != 0),
        master: None,
        f: [Field::default(); 10],
    };
    if g.vlsd {
        return Ok(g);
    }
    // Walk the channels and their compositions, depth first.
    let mut todo = vec![cg.link(1)];
    let mut seen = 0usize;
    while let Some(at) = todo.pop() {
        if at == 0 {
            continue;
        }
        seen += 1;
        if seen > MAX_CHAIN {
            return Err("too many channels (a link loop?)".into());
        }
        let cn = src.block(at, b"##CN")?;
        todo.push(cn.link(0));
        let composition = cn.link(1);
        if composition != 0 && src.head(composition)?.0 == *b"##CN" {
            todo.push(composition);
        }
        let name = src.text(cn.link(2))?;
        let cn_type = cn.u8_at(0)?;
        if cn_type == 2 || cn_type == 3 {
            let field = read_field(&cn)?;
            let (mut a, mut b) = (1.0, 0.0);
            if cn.link(4) != 0 {
                let cc = src.block(cn.link(4), b"##CC")?;
                match cc.u8_at(0)? {
                    0 => {}
                    1 => {
                        b = cc.f64_at(24)?;
                        a = cc.f64_at(32)?;
                    }
                    t => return Err(format!("master channel conversion type {t} not supported")),
                }
            }
            if cn_type == 3 {
                return Err("virtual master channels are not supported".into());
            }
            if field.bits == 0 || field.bits > 64 || field.end() > g.size {
                return Err(format!(
                    "master channel of {} bits at byte {}",
                    field.bits, field.byte
                ));
            }
            g.master = Some(Master { field, a, b });
            continue;
        }
        for kind in KINDS {
            if name == kind.name() {
                g.kind = Some(kind);
            }
        }
        let member = name.rsplit_once('.');
        if let Some((prefix, member)) = member {
            if KINDS.iter().any(|k| k.name() == prefix) {
                if let Some(i) = MEMBERS.iter().position(|&m| m == member) {
                    let field = read_field(&cn)?;
                    if cn_type != 0 || field.end() > g.size || (i != BYTES && field.bits > 64) {
                        return Err(format!("channel {name} does not fit its record (type {cn_type}, {} bits at byte {})", field.bits, field.byte));
                    }
                    g.f[i] = field;
                }
            }
        }
    }
    if g.kind.is_some() && (g.master.is_none() || !g.f[ID].present) {
        return Err(format!(
            "{} group without master or ID channel",
            g.kind.map_or("", |k| k.name())
        ));
    }
    Ok(g)
}

/// The data blocks of a data group, in order, read one at a time.
struct Blocks {
    list: Vec<u64>,
    next: usize,
    /// Current block's bytes and read position.
    buf: Vec<u8>,
    pos: usize,
    /// A DT's data still to read: (file offset, bytes left).
    dt_left: (u64, u64),
}

/// Bytes of a `##DT` read at once.
const DT_CHUNK: u64 = 1 << 20;

impl Blocks {
    fn new(src: &Src, data: u64) -> Result<Blocks, Bad> {
        let mut list = Vec::new();
        if data != 0 {
            collect_blocks(src, data, &mut list, 0)?;
        }
        Ok(Blocks {
            list,
            next: 0,
            buf: Vec::new(),
            pos: 0,
            dt_left: (0, 0),
        })
    }

    /// Refills `buf` with the next bytes of the stream; false at its end.
    fn refill(&mut self, src: &Src) -> Result<bool, Bad> {
        self.buf.clear();
        self.pos = 0;
        loop {
            if self.dt_left.1 > 0 {
                let n = self.dt_left.1.min(DT_CHUNK);
                self.buf.resize(n as usize, 0);
                src.read(self.dt_left.0, &mut self.buf)?;
                self.dt_left = (self.dt_left.0 + n, self.dt_left.1 - n);
                return Ok(true);
            }
            let Some(&at) = self.list.get(self.next) else {
                return Ok(false);
            };
            self.next += 1;
            let (id, len, links) = src.head(at)?;
            match &id {
                b"##DT" => {
                    let start = at + 24 + links * 8;
                    self.dt_left = (start, at + len - start);
                }
                b"##DZ" => {
                    let mut h = [0u8; 24];
                    src.read(at + 24, &mut h)?;
                    let zip_type = h[2];
                    let param = u32::from_le_bytes(h[4..8].try_into().expect("4")) as usize;
                    let org = u64::from_le_bytes(h[8..16].try_into().expect("8"));
                    let zipped = u64::from_le_bytes(h[16..24].try_into().expect("8"));
                    if &h[..2] != b"DT" {
                        return Err(format!(
                            "DZ block at byte {at} holds a {} block",
                            String::from_utf8_lossy(&h[..2])
                        ));
                    }
                    if org > MAX_BLOCK || zipped > len.saturating_sub(48) {
                        return Err(format!(
                            "DZ block at byte {at}: {org} bytes from {zipped} (block {len})"
                        ));
                    }
                    let mut z = vec![0u8; zipped as usize];
                    src.read(at + 48, &mut z)?;
                    let mut out = Vec::with_capacity(org as usize);
                    let mut dec = flate2::read::ZlibDecoder::new(&z[..]).take(org + 1);
                    dec.read_to_end(&mut out)
                        .map_err(|e| format!("DZ block at byte {at}: {e}"))?;
                    if out.len() as u64 != org {
                        return Err(format!(
                            "DZ block at byte {at} inflates to {} bytes, not {org}",
                            out.len()
                        ));
                    }
                    match zip_type {
                        0 => self.buf = out,
                        1 if param > 0 => {
                            let rows = out.len() / param;
                            self.buf.resize(out.len(), 0);
                            for c in 0..param {
                                for r in 0..rows {
                                    self.buf[r * param + c] = out[c * rows + r];
                                }
                            }
                            self.buf[rows * param..].copy_from_slice(&out[rows * param..]);
                        }
                        1 => self.buf = out,
                        t => return Err(format!("DZ block at byte {at}: zip type {t}")),
                    }
                    return Ok(true);
                }
                other => {
                    return Err(format!(
                        "data block at byte {at} is {}, not DT or DZ",
                        String::from_utf8_lossy(other)
                    ))
                }
            }
        }
    }
}

fn collect_blocks(src: &Src, at: u64, out: &mut Vec<u64>, depth: u32) -> Result<(), Bad> {
    if depth > 4 {
        return Err("data lists nested too deep".into());
    }
    let (id, _, _) = src.head(at)?;
    match &id {
        b"##DT" | b"##DZ" => out.push(at),
        b"##HL" => {
            let hl = src.block(at, b"##HL")?;
            collect_blocks(src, hl.link(0), out, depth + 1)?;
        }
        b"##DL" => {
            let mut dl_at = at;
            let mut n = 0usize;
            while dl_at != 0 {
                n += 1;
                if n > MAX_CHAIN {
                    return Err("too many data lists (a link loop?)".into());
                }
                let dl = src.block(dl_at, b"##DL")?;
                // links[0] is the next list; a list with no links is damaged.
                for &b in dl.links.get(1..).unwrap_or_default() {
                    match src.head(b) {
                        Ok((id, _, _)) if &id == b"##DL" || &id == b"##HL" => {
                            collect_blocks(src, b, out, depth + 1)?
                        }
                        // A damaged data block is reported when the stream reaches
                        // it, after the records before it.
                        _ if b != 0 => out.push(b),
                        _ => {}
                    }
                    if out.len() > src.len as usize / 24 {
                        return Err("more data blocks than the file can hold".into());
                    }
                }
                dl_at = dl.link(0);
            }
        }
        b"##SD" | b"##RD" => {}
        other => {
            return Err(format!(
                "data link at byte {at} is a {} block",
                String::from_utf8_lossy(other)
            ))
        }
    }
    Ok(())
}

/// Reads the records of one data group, in order.
struct Cursor {
    blocks: Blocks,
    rec_id_len: usize,
    groups: Vec<Group>,
    /// Bytes of a record that straddles blocks.
    carry: Vec<u8>,
    /// The next CAN record: group index and bytes.
    ready: Option<(usize, i64)>,
    record: Vec<u8>,
    records: u64,
}

impl Cursor {
    /// Takes the next `n` bytes of the stream into `self.record`, across block
    /// boundaries; false at a clean end of the stream.
    fn take(&mut self, src: &Src, n: usize) -> Result<bool, Bad> {
        self.carry.clear();
        while self.carry.len() < n {
            if self.blocks.pos >= self.blocks.buf.len() && !self.blocks.refill(src)? {
                if self.carry.is_empty() {
                    return Ok(false);
                }
                return Err(format!(
                    "the data ends inside record {} ({} of {n} bytes)",
                    self.records + 1,
                    self.carry.len()
                ));
            }
            let want = n - self.carry.len();
            let avail = &self.blocks.buf[self.blocks.pos..];
            let k = want.min(avail.len());
            self.carry.extend_from_slice(&avail[..k]);
            self.blocks.pos += k;
        }
        std::mem::swap(&mut self.carry, &mut self.record);
        Ok(true)
    }

    /// Moves to the next CAN record; `ready` is `None` at the end.
    fn advance(&mut self, src: &Src) -> Result<(), Bad> {
        self.ready = None;
        loop {
            let gi = if self.rec_id_len == 0 {
                0
            } else {
                if !self.take(src, self.rec_id_len)? {
                    return Ok(());
                }
                let mut le = [0u8; 8];
                le[..self.rec_id_len].copy_from_slice(&self.record[..self.rec_id_len]);
                let id = u64::from_le_bytes(le);
                self.groups
                    .iter()
                    .position(|g| g.record_id == id)
                    .ok_or_else(|| format!("record {}: unknown record ID {id}", self.records + 1))?
            };
            let size = if self.groups[gi].vlsd {
                if !self.take(src, 4)? {
                    return Err("the data ends inside a VLSD record".into());
                }
                u32::from_le_bytes(self.record[..4].try_into().expect("4")) as usize
            } else {
                self.groups[gi].size
            };
            if size as u64 > MAX_BLOCK {
                return Err(format!("record of {size} bytes"));
            }
            if !self.take(src, size)? {
                if self.rec_id_len == 0 {
                    return Ok(());
                }
                return Err(format!(
                    "the data ends after the ID of record {}",
                    self.records + 1
                ));
            }
            self.records += 1;
            let g = &self.groups[gi];
            if g.kind.is_some() && !g.vlsd {
                let ns = g.master.map_or(0, |m| m.ns(&self.record));
                self.ready = Some((gi, ns));
                return Ok(());
            }
        }
    }
}

fn frame_of(g: &Group, rec: &[u8], ts: u64) -> Result<CanFrame, String> {
    let kind = g.kind.expect("a CAN group");
    let f = &g.f;
    let id = (f[ID].uint(rec) & 0x1FFF_FFFF) as u32;
    let ext = f[IDE].uint(rec) != 0;
    let dlc = f[DLC].uint(rec) as u8;
    let fd = f[EDL].uint(rec) != 0;
    let len = if f[DLEN].present {
        f[DLEN].uint(rec).min(255) as u8
    } else if fd {
        dlc_to_len(dlc)
    } else {
        dlc.min(8)
    };
    let mut bits = if ext { flags::EXTENDED } else { 0 };
    let mut frame = match kind {
        // The requested length is the DLC (python-can's writer leaves DataLength 0).
        Kind::Remote => CanFrame::remote(id, ext, dlc.min(8)).map_err(|e| e.to_string())?,
        Kind::Data | Kind::Error => {
            if fd {
                bits |= flags::FD;
            }
            if f[BRS].uint(rec) != 0 {
                bits |= flags::BRS;
            }
            if f[ESI].uint(rec) != 0 {
                bits |= flags::ESI;
            }
            if kind == Kind::Error {
                bits |= flags::ERROR;
            }
            let bytes = &f[BYTES];
            let avail = if bytes.present {
                (bytes.bits / 8) as usize
            } else {
                0
            };
            if len as usize > avail {
                return Err(format!(
                    "{len} data bytes in a {avail}-byte DataBytes channel"
                ));
            }
            let data = &rec[bytes.byte..bytes.byte + len as usize];
            CanFrame::new(id, bits, data).map_err(|e| e.to_string())?
        }
    };
    if kind != Kind::Remote && !fd && dlc != frame.dlc() {
        if (9..=15).contains(&dlc) && frame.len == 8 {
            frame.raw_dlc = dlc;
        } else if f[DLC].present && kind == Kind::Data {
            return Err(format!("DLC {dlc} with {} data bytes", frame.len));
        }
    }
    frame.timestamp_ns = ts;
    frame.channel = if f[BUS].present {
        Channel::int(f[BUS].uint(rec) as i64)
    } else {
        Channel::NONE
    };
    frame.set_direction(if f[DIR].uint(rec) != 0 {
        Direction::Tx
    } else {
        Direction::Rx
    });
    frame.sender = SenderAddr::NONE;
    frame.validate().map_err(|e| e.to_string())?;
    Ok(frame)
}

/// The data groups of a file with their CAN layouts, and the header's start time.
fn open(src: &Src) -> Result<(Vec<Cursor>, u64), Bad> {
    let mut id = [0u8; 64];
    src.read(0, &mut id)
        .map_err(|_| "too short for an MDF file".to_string())?;
    if &id[..3] != b"MDF" && &id[..8] != b"UnFinMF " {
        return Err("not an MDF file (no MDF identification block)".into());
    }
    let version = u16::from_le_bytes([id[28], id[29]]);
    if version < 400 {
        return Err(format!("MDF version {version}: only MDF 4 is read"));
    }
    let hd = src.block(64, b"##HD")?;
    let start = hd.u64_at(0)?;
    let mut cursors = Vec::new();
    let mut dg_at = hd.link(0);
    let mut n = 0;
    while dg_at != 0 {
        n += 1;
        if n > MAX_CHAIN {
            return Err("too many data groups (a link loop?)".into());
        }
        let dg = src.block(dg_at, b"##DG")?;
        let rec_id_len = dg.u8_at(0)? as usize;
        if ![0, 1, 2, 4, 8].contains(&rec_id_len) {
            return Err(format!(
                "data group at byte {dg_at}: record ID size {rec_id_len}"
            ));
        }
        let mut groups = Vec::new();
        let mut cg_at = dg.link(1);
        while cg_at != 0 {
            if groups.len() > MAX_CHAIN {
                return Err("too many channel groups (a link loop?)".into());
            }
            let cg = src.block(cg_at, b"##CG")?;
            groups.push(read_group(src, &cg)?);
            cg_at = cg.link(0);
        }
        if rec_id_len == 0 && groups.len() > 1 {
            return Err(format!(
                "data group at byte {dg_at}: {} channel groups without record IDs",
                groups.len()
            ));
        }
        if groups.iter().any(|g| g.kind.is_some()) {
            cursors.push(Cursor {
                blocks: Blocks::new(src, dg.link(2))?,
                rec_id_len,
                groups,
                carry: Vec::new(),
                ready: None,
                record: Vec::new(),
                records: 0,
            });
        }
        dg_at = dg.link(0);
    }
    Ok((cursors, start))
}

/// Reads the CAN frames of an MF4 file in time order (groups merged).
pub fn read(
    path: &Path,
    opts: ReadOptions,
    f: &mut dyn FnMut(&Event) -> bool,
) -> Result<ReadStats, ConvertError> {
    let file = File::open(path).map_err(io_err(path))?;
    let len = file.metadata().map_err(io_err(path))?.len();
    let src = Src { file, len };
    let mut stats = ReadStats::default();
    let mut events = 0u64;
    let fail = |events: u64, message: String| ConvertError::Incomplete {
        path: path.to_path_buf(),
        message: format!("{message}; stopped there after {events} events"),
    };
    let (mut cursors, start) = open(&src).map_err(|m| fail(0, m))?;
    for c in &mut cursors {
        c.advance(&src).map_err(|m| fail(0, m))?;
    }
    let mut frame_no = 0u64;
    while let Some(ci) = cursors
        .iter()
        .enumerate()
        .filter_map(|(i, c)| c.ready.map(|(_, ns)| (ns, i)))
        .min()
        .map(|(_, i)| i)
    {
        let c = &mut cursors[ci];
        let (gi, ns) = c.ready.expect("chosen for its record");
        frame_no += 1;
        let ts = (start as i64).saturating_add(ns).max(0) as u64;
        match frame_of(&c.groups[gi], &c.record, ts) {
            Ok(frame) => {
                if !opts.offer(ts, &Event::Frame(frame), &mut events, f) {
                    stats.events = events;
                    stats.stopped = true;
                    return Ok(stats);
                }
            }
            Err(_) if opts.skip_bad => stats.skipped += 1,
            Err(message) => {
                return Err(ConvertError::Parse {
                    path: path.to_path_buf(),
                    line: frame_no,
                    message: format!(
                        "frame {frame_no}: {message} (use --skip-bad to skip such frames)"
                    ),
                });
            }
        }
        c.advance(&src).map_err(|m| fail(events, m))?;
    }
    stats.events = events;
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<CanFrame> {
        let texts = [
            "123#DEADBEEF",
            "12345678#00",
            "123#R",
            "7FF#R4",
            "123##5000102030405060708090A0B",
            "1FFFFFFF##3",
            "20000080#0000000000000000",
            "001#1122334455667788",
            "7FF#",
        ];
        texts
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let mut f: CanFrame = t.parse().unwrap();
                f.timestamp_ns = 1_796_288_400_123_456_789 + i as u64 * 1_000_123;
                f.channel = Channel::int(i as i64 % 3);
                if i % 2 == 1 {
                    f.set_direction(Direction::Tx);
                }
                if i == 7 {
                    f.raw_dlc = 13;
                }
                f
            })
            .collect()
    }

    fn write(path: &Path, opts: Mf4Options, frames: &[CanFrame]) {
        let mut w: Box<dyn FrameWriter> = Box::new(Mf4Writer::create(path, opts).unwrap());
        for f in frames {
            w.write_frame(f).unwrap();
        }
        w.finish().unwrap();
    }

    fn read_all(path: &Path) -> Result<Vec<CanFrame>, ConvertError> {
        let mut got = Vec::new();
        read(path, ReadOptions::default(), &mut |e| {
            if let Event::Frame(f) = e {
                got.push(*f);
            }
            true
        })?;
        Ok(got)
    }

    #[test]
    fn round_trip_every_layout() {
        let dir = std::env::temp_dir().join(format!("canmc-mf4-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // Enough frames for several blocks, all three groups interleaved.
        let mut frames = Vec::new();
        for k in 0..40_000u64 {
            let mut f = sample()[(k % 9) as usize];
            f.timestamp_ns = 1_796_288_400_123_456_789 + k * 10_007;
            frames.push(f);
        }
        for compress in [false, true] {
            for layout in [Layout::Sorted, Layout::Unsorted] {
                let path = dir.join(format!("{compress}-{layout:?}.mf4"));
                write(&path, Mf4Options { compress, layout }, &frames);
                let got = read_all(&path).unwrap();
                assert_eq!(got.len(), frames.len(), "{compress} {layout:?}");
                for (g, w) in got.iter().zip(&frames) {
                    assert_eq!(g, w, "{compress} {layout:?}");
                }
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_writer_that_never_finishes_leaves_what_was_flushed() {
        let dir = std::env::temp_dir().join(format!("canmc-mf4-kill-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let frames: Vec<CanFrame> = (0..45_000u64)
            .map(|k| {
                let mut f = sample()[(k % 9) as usize];
                f.timestamp_ns = 1_796_288_400_123_456_789 + k * 10_007;
                f
            })
            .collect();
        for compress in [false, true] {
            for layout in [Layout::Sorted, Layout::Unsorted] {
                let path = dir.join(format!("{compress}-{layout:?}.mf4"));
                let mut w = Mf4Writer::create(&path, Mf4Options { compress, layout }).unwrap();
                for (i, f) in frames.iter().enumerate() {
                    if i == 15_000 || i == 30_000 {
                        w.flush().unwrap();
                    }
                    w.write_frame(f).unwrap();
                }
                // As a process killed here: no finish, no destructor.
                std::mem::forget(w);
                let got = read_all(&path).unwrap();
                assert!(
                    got == frames[..30_000],
                    "{compress} {layout:?}: {}",
                    got.len()
                );
            }
        }
        // Killed before the first flush: the file opens and holds nothing.
        let path = dir.join("early.mf4");
        let mut w = Mf4Writer::create(&path, Mf4Options::default()).unwrap();
        w.write_frame(&frames[0]).unwrap();
        std::mem::forget(w);
        assert_eq!(read_all(&path).unwrap(), vec![]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn damaged_files_give_an_error_after_the_prefix() {
        let dir = std::env::temp_dir().join(format!("canmc-mf4-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("b.mf4");
        let mut frames = Vec::new();
        for k in 0..30_000u64 {
            let mut f = sample()[0];
            f.timestamp_ns += k;
            frames.push(f);
        }
        write(&path, Mf4Options::default(), &frames);
        let bytes = std::fs::read(&path).unwrap();
        for cut in [0, 10, 64, 200, bytes.len() / 2, bytes.len() - 8] {
            std::fs::write(&path, &bytes[..cut]).unwrap();
            assert!(read_all(&path).is_err(), "cut {cut}");
        }
        // A data block header smashed after the first block: the first block's frames,
        // exactly, then an error.
        let second = bytes
            .windows(4)
            .enumerate()
            .filter(|(_, w)| w == b"##DT")
            .nth(1)
            .unwrap()
            .0;
        let mut bad = bytes.clone();
        bad[second..second + 4].copy_from_slice(b"XXXX");
        std::fs::write(&path, &bad).unwrap();
        let mut got = Vec::new();
        let r = read(&path, ReadOptions::default(), &mut |e| {
            if let Event::Frame(f) = e {
                got.push(*f);
            }
            true
        });
        assert!(r.is_err());
        let per_block = BLOCK_TARGET.div_ceil(84);
        assert_eq!(got.len(), per_block);
        assert_eq!(got[..], frames[..per_block]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
