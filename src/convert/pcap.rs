//! pcap and pcapng captures of CAN frames as Wireshark and tcpdump know them:
//! LINKTYPE_CAN_SOCKETCAN (227), nanosecond timestamps, one SocketCAN `can_frame` /
//! `canfd_frame` per packet.
//!
//! Packet layout (LINKTYPE_CAN_SOCKETCAN stores the ID in network byte order):
//!
//! | bytes | classic (16 bytes)              | CAN FD (72 bytes)                          |
//! |-------|---------------------------------|--------------------------------------------|
//! | 0..4  | can_id, big-endian, with EFF/RTR/ERR flags | same                            |
//! | 4     | len (requested length for RTR)  | len                                        |
//! | 5     | 0                               | flags: BRS 0x01, ESI 0x02, FDF 0x04        |
//! | 6..8  | 0                               | 0                                          |
//! | 8..   | 8 data bytes, zero padded       | 64 data bytes, zero padded                 |
//!
//! The packet length tells Wireshark which struct it is (16 or 72 bytes); FDF is set as
//! well because newer dissectors look at it.
//!
//! Losses: pcap has nowhere to put them, so they are dropped. pcapng puts them in an
//! `opt_comment` on the next packet (or on the closing statistics block) and writes the
//! kernel drop total as `isb_ifdrop` in an Interface Statistics Block at
//! [`FrameWriter::finish`].
//!
//! Writers keep one reusable buffer; writing a frame allocates nothing.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use super::{ConvertError, FrameWriter};
use crate::frame::{flags, CanFrame, SenderAddr};

/// The pcap / pcapng link type of SocketCAN frames.
pub const LINKTYPE_CAN_SOCKETCAN: u16 = 227;
/// `can_id` flag: 29-bit identifier.
pub const CAN_EFF_FLAG: u32 = 0x8000_0000;
/// `can_id` flag: remote transmission request.
pub const CAN_RTR_FLAG: u32 = 0x4000_0000;
/// `can_id` flag: error frame.
pub const CAN_ERR_FLAG: u32 = 0x2000_0000;
/// `canfd_frame.flags`: bit rate switch.
pub const CANFD_BRS: u8 = 0x01;
/// `canfd_frame.flags`: error state indicator.
pub const CANFD_ESI: u8 = 0x02;
/// `canfd_frame.flags`: this is a CAN FD frame.
pub const CANFD_FDF: u8 = 0x04;
/// Size of SocketCAN's `struct can_frame`.
pub const CAN_MTU: usize = 16;
/// Size of SocketCAN's `struct canfd_frame`.
pub const CANFD_MTU: usize = 72;

/// pcap's magic for nanosecond timestamps.
const PCAP_MAGIC_NS: u32 = 0xA1B2_3C4D;
const PCAP_MAGIC_US: u32 = 0xA1B2_C3D4;

const BT_SHB: u32 = 0x0A0D_0D0A;
const BT_IDB: u32 = 0x0000_0001;
const BT_EPB: u32 = 0x0000_0006;
const BT_ISB: u32 = 0x0000_0005;
const BYTE_ORDER_MAGIC: u32 = 0x1A2B_3C4D;
const OPT_END: u16 = 0;
const OPT_COMMENT: u16 = 1;
const SHB_USERAPPL: u16 = 4;
const IF_NAME: u16 = 2;
const IF_TSRESOL: u16 = 9;
const ISB_STARTTIME: u16 = 2;
const ISB_ENDTIME: u16 = 3;
const ISB_IFDROP: u16 = 5;

/// Writes `frame` as a SocketCAN struct into `out`; returns its length (16 or 72).
pub fn encode_socketcan(frame: &CanFrame, out: &mut [u8; CANFD_MTU]) -> usize {
    *out = [0; CANFD_MTU];
    let mut can_id = frame.id;
    if frame.is_error() {
        // SocketCAN error frames carry the class bits and CAN_ERR_FLAG, never EFF.
        can_id |= CAN_ERR_FLAG;
    } else if frame.is_extended() {
        can_id |= CAN_EFF_FLAG;
    }
    if frame.is_remote() {
        can_id |= CAN_RTR_FLAG;
    }
    out[..4].copy_from_slice(&can_id.to_be_bytes());
    out[4] = frame.len;
    let payload = frame.payload();
    out[8..8 + payload.len()].copy_from_slice(payload);
    if frame.is_fd() {
        out[5] = CANFD_FDF
            | if frame.brs() { CANFD_BRS } else { 0 }
            | if frame.esi() { CANFD_ESI } else { 0 };
        CANFD_MTU
    } else {
        CAN_MTU
    }
}

/// Why a packet is not a SocketCAN frame canmc can take.
fn decode_socketcan(pkt: &[u8], timestamp_ns: u64) -> Result<CanFrame, String> {
    if pkt.len() < 8 {
        return Err(format!(
            "packet of {} bytes is too short for a CAN frame",
            pkt.len()
        ));
    }
    let can_id = u32::from_be_bytes([pkt[0], pkt[1], pkt[2], pkt[3]]);
    let len = pkt[4] as usize;
    let fd = pkt.len() == CANFD_MTU || pkt[5] & CANFD_FDF != 0;
    let mut fl = 0u8;
    let id;
    if can_id & CAN_ERR_FLAG != 0 {
        // Extended, as frames parsed from can-utils text are (see frame::flags::ERROR).
        fl |= flags::ERROR | flags::EXTENDED;
        id = can_id & 0x1FFF_FFFF;
    } else if can_id & CAN_EFF_FLAG != 0 {
        fl |= flags::EXTENDED;
        id = can_id & 0x1FFF_FFFF;
    } else {
        id = can_id & 0x7FF;
    }
    if can_id & CAN_RTR_FLAG != 0 && !fd {
        fl |= flags::RTR;
    }
    if fd {
        fl |= flags::FD;
        if pkt[5] & CANFD_BRS != 0 {
            fl |= flags::BRS;
        }
        if pkt[5] & CANFD_ESI != 0 {
            fl |= flags::ESI;
        }
    }
    let data_len = if fl & flags::RTR != 0 { 0 } else { len };
    if pkt.len() < 8 + data_len {
        return Err(format!(
            "packet of {} bytes is too short for {len} data bytes",
            pkt.len()
        ));
    }
    let mut frame = if fl & flags::RTR != 0 {
        let mut f = CanFrame::EMPTY;
        f.id = id;
        f.flags = fl;
        f.len = len as u8;
        f.validate().map(|_| f)
    } else {
        CanFrame::new(id, fl, &pkt[8..8 + data_len])
    }
    .map_err(|e| e.to_string())?;
    frame.timestamp_ns = timestamp_ns;
    Ok(frame)
}

fn io_err(path: &Path) -> impl Fn(io::Error) -> ConvertError + '_ {
    move |source| ConvertError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// pcap writer: a 24-byte header, then a 16-byte record header per frame. Losses are
/// not written (pcap cannot carry them).
#[derive(Debug)]
pub struct PcapWriter {
    out: BufWriter<File>,
    path: PathBuf,
}

impl PcapWriter {
    /// Creates `path` and writes the file header (nanosecond magic, link type 227).
    pub fn create(path: &Path) -> Result<PcapWriter, ConvertError> {
        let file = File::create(path).map_err(io_err(path))?;
        let mut out = BufWriter::with_capacity(1 << 16, file);
        let mut hdr = [0u8; 24];
        hdr[0..4].copy_from_slice(&PCAP_MAGIC_NS.to_le_bytes());
        hdr[4..6].copy_from_slice(&2u16.to_le_bytes());
        hdr[6..8].copy_from_slice(&4u16.to_le_bytes());
        // thiszone and sigfigs stay 0.
        hdr[16..20].copy_from_slice(&(CANFD_MTU as u32).to_le_bytes());
        hdr[20..24].copy_from_slice(&(LINKTYPE_CAN_SOCKETCAN as u32).to_le_bytes());
        out.write_all(&hdr).map_err(io_err(path))?;
        Ok(PcapWriter {
            out,
            path: path.to_path_buf(),
        })
    }
}

impl FrameWriter for PcapWriter {
    fn write_frame(&mut self, frame: &CanFrame) -> Result<(), ConvertError> {
        let mut pkt = [0u8; CANFD_MTU];
        let n = encode_socketcan(frame, &mut pkt);
        let ts = frame.timestamp_ns;
        let mut rec = [0u8; 16];
        // pcap's seconds field is 32 bits: good until 2106.
        rec[0..4].copy_from_slice(&((ts / 1_000_000_000) as u32).to_le_bytes());
        rec[4..8].copy_from_slice(&((ts % 1_000_000_000) as u32).to_le_bytes());
        rec[8..12].copy_from_slice(&(n as u32).to_le_bytes());
        rec[12..16].copy_from_slice(&(n as u32).to_le_bytes());
        self.out.write_all(&rec).map_err(io_err(&self.path))?;
        self.out.write_all(&pkt[..n]).map_err(io_err(&self.path))
    }

    fn flush(&mut self) -> Result<(), ConvertError> {
        self.out.flush().map_err(io_err(&self.path))
    }

    fn finish(mut self: Box<Self>) -> Result<(), ConvertError> {
        self.out.flush().map_err(io_err(&self.path))?;
        self.out.get_ref().sync_all().map_err(io_err(&self.path))
    }
}

/// pcapng writer: one section, one interface (`canmc`, tsresol 10^-9), an Enhanced
/// Packet Block per frame, losses as comments, an Interface Statistics Block at the end.
#[derive(Debug)]
pub struct PcapngWriter {
    out: BufWriter<File>,
    path: PathBuf,
    /// Text of the comment the next packet carries (losses seen since the last packet).
    comment: String,
    block: Vec<u8>,
    kernel_drops: u64,
    first_ns: Option<u64>,
    last_ns: u64,
}

fn push_opt(block: &mut Vec<u8>, code: u16, value: &[u8]) {
    block.extend_from_slice(&code.to_le_bytes());
    block.extend_from_slice(&(value.len() as u16).to_le_bytes());
    block.extend_from_slice(value);
    pad4(block);
}

fn pad4(block: &mut Vec<u8>) {
    while block.len() % 4 != 0 {
        block.push(0);
    }
}

/// Starts a block in `block` (type and a length placeholder).
fn begin_block(block: &mut Vec<u8>, kind: u32) {
    block.clear();
    block.extend_from_slice(&kind.to_le_bytes());
    block.extend_from_slice(&0u32.to_le_bytes());
}

/// Fills in both length fields of the block in `block`.
fn end_block(block: &mut Vec<u8>) {
    let total = (block.len() + 4) as u32;
    block[4..8].copy_from_slice(&total.to_le_bytes());
    block.extend_from_slice(&total.to_le_bytes());
}

fn ts_words(ns: u64) -> [u8; 8] {
    let mut w = [0u8; 8];
    w[0..4].copy_from_slice(&((ns >> 32) as u32).to_le_bytes());
    w[4..8].copy_from_slice(&(ns as u32).to_le_bytes());
    w
}

impl PcapngWriter {
    /// Creates `path` and writes the Section Header and Interface Description blocks.
    pub fn create(path: &Path) -> Result<PcapngWriter, ConvertError> {
        let file = File::create(path).map_err(io_err(path))?;
        let mut w = PcapngWriter {
            out: BufWriter::with_capacity(1 << 16, file),
            path: path.to_path_buf(),
            comment: String::with_capacity(256),
            block: Vec::with_capacity(512),
            kernel_drops: 0,
            first_ns: None,
            last_ns: 0,
        };
        let b = &mut w.block;
        begin_block(b, BT_SHB);
        b.extend_from_slice(&BYTE_ORDER_MAGIC.to_le_bytes());
        b.extend_from_slice(&1u16.to_le_bytes());
        b.extend_from_slice(&0u16.to_le_bytes());
        b.extend_from_slice(&(-1i64).to_le_bytes());
        let appl = concat!("canmc ", env!("CARGO_PKG_VERSION"));
        push_opt(b, SHB_USERAPPL, appl.as_bytes());
        push_opt(b, OPT_END, &[]);
        end_block(b);
        w.out.write_all(&w.block).map_err(io_err(path))?;

        let b = &mut w.block;
        begin_block(b, BT_IDB);
        b.extend_from_slice(&LINKTYPE_CAN_SOCKETCAN.to_le_bytes());
        b.extend_from_slice(&0u16.to_le_bytes());
        b.extend_from_slice(&(CANFD_MTU as u32).to_le_bytes());
        push_opt(b, IF_NAME, b"canmc");
        push_opt(b, IF_TSRESOL, &[9]);
        push_opt(b, OPT_END, &[]);
        end_block(b);
        w.out.write_all(&w.block).map_err(io_err(path))?;
        Ok(w)
    }

    fn note(&mut self, ts: u64) {
        self.first_ns.get_or_insert(ts);
        self.last_ns = self.last_ns.max(ts);
    }

    fn add_comment(&mut self, text: std::fmt::Arguments<'_>) {
        // An option holds at most 64 KiB; past a few KiB a storm of losses is better
        // told by the statistics block than by a longer comment.
        if self.comment.len() > 8192 {
            return;
        }
        if !self.comment.is_empty() {
            self.comment.push('\n');
        }
        let _ = self.comment.write_fmt(text);
    }
}

impl FrameWriter for PcapngWriter {
    fn write_frame(&mut self, frame: &CanFrame) -> Result<(), ConvertError> {
        self.note(frame.timestamp_ns);
        let mut pkt = [0u8; CANFD_MTU];
        let n = encode_socketcan(frame, &mut pkt);
        let b = &mut self.block;
        begin_block(b, BT_EPB);
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&ts_words(frame.timestamp_ns));
        b.extend_from_slice(&(n as u32).to_le_bytes());
        b.extend_from_slice(&(n as u32).to_le_bytes());
        b.extend_from_slice(&pkt[..n]);
        pad4(b);
        if !self.comment.is_empty() {
            push_opt(b, OPT_COMMENT, self.comment.as_bytes());
            push_opt(b, OPT_END, &[]);
            self.comment.clear();
        }
        end_block(b);
        self.out.write_all(&self.block).map_err(io_err(&self.path))
    }

    fn write_loss(&mut self, sender: SenderAddr, lost: u64, ts: u64) -> Result<(), ConvertError> {
        self.note(ts);
        self.add_comment(format_args!(
            "canmc: {lost} datagrams lost from {sender:?} before this packet"
        ));
        Ok(())
    }

    fn write_kernel_drops(&mut self, count: u64, ts: u64) -> Result<(), ConvertError> {
        self.note(ts);
        self.kernel_drops += count;
        self.add_comment(format_args!(
            "canmc: kernel dropped {count} datagrams before this packet"
        ));
        Ok(())
    }

    fn flush(&mut self) -> Result<(), ConvertError> {
        self.out.flush().map_err(io_err(&self.path))
    }

    fn finish(mut self: Box<Self>) -> Result<(), ConvertError> {
        let b = &mut self.block;
        begin_block(b, BT_ISB);
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&ts_words(self.last_ns));
        if let Some(first) = self.first_ns {
            push_opt(b, ISB_STARTTIME, &ts_words(first));
            push_opt(b, ISB_ENDTIME, &ts_words(self.last_ns));
        }
        push_opt(b, ISB_IFDROP, &self.kernel_drops.to_le_bytes());
        if !self.comment.is_empty() {
            // Losses after the last packet.
            push_opt(b, OPT_COMMENT, self.comment.as_bytes());
        }
        push_opt(b, OPT_END, &[]);
        end_block(b);
        self.out
            .write_all(&self.block)
            .map_err(io_err(&self.path))?;
        self.out.flush().map_err(io_err(&self.path))?;
        self.out.get_ref().sync_all().map_err(io_err(&self.path))
    }
}

/// One packet of a capture, as [`read_packets`] hands it over.
#[derive(Debug)]
pub struct Packet<'a> {
    /// 1-based packet number in the file (what Wireshark shows as the frame number).
    pub number: u64,
    /// The frame, or why the packet is not a valid CAN frame.
    pub frame: Result<CanFrame, String>,
    /// pcapng comment of the packet, if any.
    pub comment: Option<&'a str>,
}

fn bad(path: &Path, number: u64, message: impl Into<String>) -> ConvertError {
    ConvertError::Parse {
        path: path.to_path_buf(),
        line: number,
        message: message.into(),
    }
}

/// Reads the CAN frames of a pcap (`ng == false`) or pcapng file in order and hands
/// each packet to `f`, which returns `false` to stop.
///
/// Accepts both byte orders, micro- and nanosecond pcap, any pcapng `if_tsresol`, and
/// several interfaces in a pcapng file as long as each is LINKTYPE_CAN_SOCKETCAN.
/// A file that is not a capture of that link type, or is cut inside a header, is an
/// error (`Parse`, with the packet number as its line). A truncated last packet ends
/// the read, as Wireshark does.
pub fn read_packets(
    path: &Path,
    ng: bool,
    f: &mut dyn FnMut(Packet<'_>) -> bool,
) -> Result<(), ConvertError> {
    let file = File::open(path).map_err(io_err(path))?;
    let mut r = io::BufReader::with_capacity(1 << 16, file);
    if ng {
        read_pcapng(path, &mut r, f)
    } else {
        read_pcap(path, &mut r, f)
    }
}

/// `read_exact` that tells a clean end of file (`Ok(false)`) from a cut one.
fn fill(r: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

fn read_pcap(
    path: &Path,
    r: &mut impl Read,
    f: &mut dyn FnMut(Packet<'_>) -> bool,
) -> Result<(), ConvertError> {
    let mut hdr = [0u8; 24];
    if !fill(r, &mut hdr).map_err(io_err(path))? {
        return Err(bad(path, 0, "empty file, not a pcap"));
    }
    let magic_le = u32::from_le_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]);
    let magic_be = u32::from_be_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]);
    let (le, ns) = match (magic_le, magic_be) {
        (PCAP_MAGIC_NS, _) => (true, true),
        (PCAP_MAGIC_US, _) => (true, false),
        (_, PCAP_MAGIC_NS) => (false, true),
        (_, PCAP_MAGIC_US) => (false, false),
        _ => return Err(bad(path, 0, "not a pcap file (bad magic)")),
    };
    let u32_at = |b: &[u8], i: usize| {
        let w = [b[i], b[i + 1], b[i + 2], b[i + 3]];
        if le {
            u32::from_le_bytes(w)
        } else {
            u32::from_be_bytes(w)
        }
    };
    let linktype = u32_at(&hdr, 20) & 0xFFFF;
    if linktype != LINKTYPE_CAN_SOCKETCAN as u32 {
        return Err(bad(
            path,
            0,
            format!("link type {linktype} is not LINKTYPE_CAN_SOCKETCAN (227)"),
        ));
    }
    let mut buf = vec![0u8; 1 << 16];
    let mut number = 0u64;
    loop {
        let mut rec = [0u8; 16];
        match fill(r, &mut rec) {
            Ok(true) => {}
            Ok(false) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(io_err(path)(e)),
        }
        number += 1;
        let (sec, frac) = (u32_at(&rec, 0) as u64, u32_at(&rec, 4) as u64);
        let incl = u32_at(&rec, 8) as usize;
        if incl > buf.len() {
            return Err(bad(path, number, format!("packet of {incl} bytes")));
        }
        match fill(r, &mut buf[..incl]) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(io_err(path)(e)),
        }
        let ts = sec * 1_000_000_000 + if ns { frac } else { frac * 1000 };
        let frame = decode_socketcan(&buf[..incl], ts);
        if !f(Packet {
            number,
            frame,
            comment: None,
        }) {
            return Ok(());
        }
    }
}

fn read_pcapng(
    path: &Path,
    r: &mut impl Read,
    f: &mut dyn FnMut(Packet<'_>) -> bool,
) -> Result<(), ConvertError> {
    // (link type, ns per tick or, for binary resolutions, ticks per second)
    let mut ifaces: Vec<(u16, TsRes)> = Vec::new();
    let mut le = true;
    let mut number = 0u64;
    let mut body = Vec::with_capacity(1 << 12);
    let mut first = true;
    loop {
        let mut head = [0u8; 8];
        match fill(r, &mut head) {
            Ok(true) => {}
            Ok(false) if !first => return Ok(()),
            Ok(false) => return Err(bad(path, 0, "empty file, not a pcapng")),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && !first => return Ok(()),
            Err(e) => return Err(io_err(path)(e)),
        }
        let kind = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        if kind == BT_SHB {
            // The byte order magic, which follows the length, decides how to read both.
            let mut bom = [0u8; 4];
            fill(r, &mut bom).map_err(io_err(path))?;
            le = match u32::from_le_bytes(bom) {
                BYTE_ORDER_MAGIC => true,
                m if m.swap_bytes() == BYTE_ORDER_MAGIC => false,
                _ => return Err(bad(path, number, "pcapng section header: bad byte order")),
            };
            ifaces.clear();
        } else if first {
            return Err(bad(path, 0, "not a pcapng file (no section header)"));
        }
        first = false;
        let rd32 = |b: &[u8], i: usize| {
            let w = [b[i], b[i + 1], b[i + 2], b[i + 3]];
            if le {
                u32::from_le_bytes(w)
            } else {
                u32::from_be_bytes(w)
            }
        };
        let rd16 = |b: &[u8], i: usize| {
            let w = [b[i], b[i + 1]];
            if le {
                u16::from_le_bytes(w)
            } else {
                u16::from_be_bytes(w)
            }
        };
        let kind = rd32(&head, 0);
        let total = rd32(&head, 4) as usize;
        let already = if kind == BT_SHB { 12 } else { 8 };
        if total < already + 4 || total % 4 != 0 || total > 1 << 24 {
            return Err(bad(path, number, format!("pcapng block of {total} bytes")));
        }
        body.clear();
        body.resize(total - already, 0);
        match fill(r, &mut body) {
            Ok(true) => {}
            // A capture cut inside its last packet: keep what came before, as Wireshark does.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && kind == BT_EPB => return Ok(()),
            Ok(false) if kind == BT_EPB => return Ok(()),
            Ok(false) => return Err(bad(path, number, "pcapng file cut inside a block")),
            Err(e) => return Err(io_err(path)(e)),
        }
        let body = &body[..body.len() - 4];
        match kind {
            BT_IDB => {
                if body.len() < 8 {
                    return Err(bad(path, number, "short interface description block"));
                }
                let linktype = rd16(body, 0);
                let mut res = TsRes::Decimal(6);
                for (code, value) in options(&body[8..], le) {
                    if code == IF_TSRESOL && !value.is_empty() {
                        res = if value[0] & 0x80 != 0 {
                            TsRes::Binary(value[0] & 0x7F)
                        } else {
                            TsRes::Decimal(value[0])
                        };
                    }
                }
                ifaces.push((linktype, res));
            }
            BT_EPB => {
                number += 1;
                if body.len() < 20 {
                    return Err(bad(path, number, "short enhanced packet block"));
                }
                let iface = rd32(body, 0) as usize;
                let Some(&(linktype, res)) = ifaces.get(iface) else {
                    return Err(bad(
                        path,
                        number,
                        format!("packet on unknown interface {iface}"),
                    ));
                };
                if linktype != LINKTYPE_CAN_SOCKETCAN {
                    return Err(bad(
                        path,
                        number,
                        format!("link type {linktype} is not LINKTYPE_CAN_SOCKETCAN (227)"),
                    ));
                }
                let ticks = ((rd32(body, 4) as u64) << 32) | rd32(body, 8) as u64;
                let cap = rd32(body, 12) as usize;
                if 20 + cap > body.len() {
                    return Err(bad(path, number, "packet longer than its block"));
                }
                let pkt = &body[20..20 + cap];
                let opts_at = 20 + cap.div_ceil(4) * 4;
                let comment = options(body.get(opts_at..).unwrap_or(&[]), le)
                    .find(|(c, _)| *c == OPT_COMMENT)
                    .and_then(|(_, v)| std::str::from_utf8(v).ok());
                let frame = decode_socketcan(pkt, res.to_ns(ticks));
                if !f(Packet {
                    number,
                    frame,
                    comment,
                }) {
                    return Ok(());
                }
            }
            // Statistics, name resolution, obsolete and custom blocks carry no frames.
            _ => {}
        }
    }
}

#[derive(Clone, Copy)]
enum TsRes {
    Decimal(u8),
    Binary(u8),
}

impl TsRes {
    fn to_ns(self, ticks: u64) -> u64 {
        match self {
            TsRes::Decimal(9) => ticks,
            TsRes::Decimal(d) if d < 9 => ticks.saturating_mul(10u64.pow(9 - d as u32)),
            TsRes::Decimal(d) => ticks / 10u64.saturating_pow(d as u32 - 9),
            TsRes::Binary(b) if b < 64 => {
                ((ticks as u128 * 1_000_000_000) >> b).min(u64::MAX as u128) as u64
            }
            TsRes::Binary(_) => 0,
        }
    }
}

/// The options of a pcapng block body, stopping at the end marker or at bad lengths.
fn options(mut b: &[u8], le: bool) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if b.len() < 4 {
            return None;
        }
        let rd = |i: usize| {
            if le {
                u16::from_le_bytes([b[i], b[i + 1]])
            } else {
                u16::from_be_bytes([b[i], b[i + 1]])
            }
        };
        let (code, len) = (rd(0), rd(2) as usize);
        if code == OPT_END || 4 + len > b.len() {
            return None;
        }
        let value = &b[4..4 + len];
        b = &b[(4 + len.div_ceil(4) * 4).min(b.len())..];
        Some((code, value))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socketcan_bytes() {
        let mut out = [0u8; CANFD_MTU];
        let f: CanFrame = "12345678#R3".parse().unwrap();
        assert_eq!(encode_socketcan(&f, &mut out), CAN_MTU);
        assert_eq!(&out[..8], &[0xD2, 0x34, 0x56, 0x78, 3, 0, 0, 0]);
        let f: CanFrame = "123##3AABB".parse().unwrap();
        assert_eq!(encode_socketcan(&f, &mut out), CANFD_MTU);
        assert_eq!(&out[..10], &[0, 0, 1, 0x23, 2, 7, 0, 0, 0xAA, 0xBB]);
        let f: CanFrame = "20000080#0000000000000000".parse().unwrap();
        encode_socketcan(&f, &mut out);
        assert_eq!(&out[..5], &[0x20, 0, 0, 0x80, 8]);
    }

    #[test]
    fn decodes_what_it_encodes() {
        for text in [
            "123#DEADBEEF",
            "1ABCDEF0#",
            "123#R",
            "7FF#R8",
            "1ABCDEF0#R2",
            "20000080#0102030405060708",
            "123##0",
            "123##1AABBCCDDEEFF0011",
            "1ABCDEF0##3",
        ] {
            let f: CanFrame = text.parse().unwrap();
            let mut out = [0u8; CANFD_MTU];
            let n = encode_socketcan(&f, &mut out);
            assert_eq!(
                decode_socketcan(&out[..n], 7).unwrap().content(),
                f,
                "{text}"
            );
        }
        assert!(decode_socketcan(&[0; 7], 0).is_err());
        // A classic frame claiming 12 bytes.
        let mut bad = [0u8; CAN_MTU];
        bad[4] = 12;
        assert!(decode_socketcan(&bad, 0).is_err());
    }

    #[test]
    fn resolutions() {
        assert_eq!(TsRes::Decimal(6).to_ns(5), 5000);
        assert_eq!(TsRes::Decimal(9).to_ns(5), 5);
        assert_eq!(TsRes::Binary(10).to_ns(1024), 1_000_000_000);
    }
}
