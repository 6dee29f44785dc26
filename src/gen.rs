//! Traffic generation as can-utils' cangen does it: ID, length and data each random,
//! incrementing or fixed; classic, extended, FD (with BRS/ESI) or remote frames.
//!
//! [`Generator::next_frame`] allocates nothing, so `gen` can run at the kernel's rate.

use std::fmt;
use std::str::FromStr;

use crate::frame::{flags, CanFrame, FrameError, FD_LENGTHS};

/// How one field of the generated frames changes from frame to frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode<T> {
    /// `r`: random.
    Random,
    /// `i`: incrementing (wrapping within the allowed range).
    Increment,
    /// A fixed value.
    Fixed(T),
}

/// A `-I`/`-L`/`-D` argument that does not parse; each variant holds the argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModeError {
    /// `-I` is not `r`, `i` or a hex ID.
    Id(String),
    /// `-L` is not `r`, `i` or a decimal length.
    Len(String),
    /// `-D` is not `r`, `i` or hex payload bytes.
    Data(String),
}

impl fmt::Display for ModeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (what, arg) = match self {
            ModeError::Id(s) => ("hex ID", s),
            ModeError::Len(s) => ("length", s),
            ModeError::Data(s) => ("hex payload", s),
        };
        write!(
            f,
            "{what} mode '{arg}' is not 'r' (random), 'i' (increment) or a {what}"
        )
    }
}

impl std::error::Error for ModeError {}

fn parse_mode<T>(
    s: &str,
    err: fn(String) -> ModeError,
    fixed: impl Fn(&str) -> Option<T>,
) -> Result<Mode<T>, ModeError> {
    match s {
        "r" => Ok(Mode::Random),
        "i" => Ok(Mode::Increment),
        _ => fixed(s).map(Mode::Fixed).ok_or_else(|| err(s.to_owned())),
    }
}

/// `-I`: `r`, `i` or a hex ID.
pub fn parse_id_mode(s: &str) -> Result<Mode<u32>, ModeError> {
    parse_mode(s, ModeError::Id, |t| u32::from_str_radix(t, 16).ok())
}

/// `-L`: `r`, `i` or a decimal length.
pub fn parse_len_mode(s: &str) -> Result<Mode<u8>, ModeError> {
    parse_mode(s, ModeError::Len, |t| t.parse().ok())
}

/// `-D`: `r`, `i` or hex payload bytes.
pub fn parse_data_mode(s: &str) -> Result<Mode<Payload>, ModeError> {
    parse_mode(s, ModeError::Data, |t| t.parse().ok())
}

/// Fixed payload bytes for `-D <hex>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Payload {
    bytes: [u8; 64],
    len: u8,
}

impl FromStr for Payload {
    type Err = ();
    fn from_str(s: &str) -> Result<Payload, ()> {
        let s = s.as_bytes();
        if s.len() % 2 != 0 || s.len() > 128 {
            return Err(());
        }
        let mut bytes = [0u8; 64];
        for (i, pair) in s.chunks(2).enumerate() {
            let text = std::str::from_utf8(pair).map_err(|_| ())?;
            bytes[i] = u8::from_str_radix(text, 16).map_err(|_| ())?;
        }
        Ok(Payload {
            bytes,
            len: (s.len() / 2) as u8,
        })
    }
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenConfig {
    /// CAN ID (`-I`): random, incrementing or fixed.
    pub id: Mode<u32>,
    /// Data length (`-L`): random, incrementing or fixed.
    pub len: Mode<u8>,
    /// Payload (`-D`): random, incrementing or fixed bytes.
    pub data: Mode<Payload>,
    /// 29-bit IDs (`-e`).
    pub extended: bool,
    /// CAN FD frames (`-f`).
    pub fd: bool,
    /// FD frames with bit-rate switch (`-b`).
    pub brs: bool,
    /// FD frames with the error-state indicator set (`-E`).
    pub esi: bool,
    /// Remote (RTR) frames (`-R`).
    pub remote: bool,
    /// Seed of the random modes: the same seed gives the same frames.
    pub seed: u64,
}

impl Default for GenConfig {
    fn default() -> Self {
        GenConfig {
            id: Mode::Random,
            len: Mode::Random,
            data: Mode::Random,
            extended: false,
            fd: false,
            brs: false,
            esi: false,
            remote: false,
            seed: 0x9E37_79B9_7F4A_7C15,
        }
    }
}

/// Produces frames per a [`GenConfig`]; each is valid by construction.
#[derive(Debug, Clone)]
pub struct Generator {
    cfg: GenConfig,
    rng: u64,
    counter: u64,
}

impl Generator {
    /// Checks the combination once, so that every generated frame is valid.
    pub fn new(cfg: GenConfig) -> Result<Generator, FrameError> {
        let mut g = Generator {
            rng: cfg.seed | 1,
            cfg,
            counter: 0,
        };
        let fd = g.cfg.fd || g.cfg.brs || g.cfg.esi;
        g.cfg.fd = fd;
        if g.cfg.remote && fd {
            return Err(FrameError::RemoteFd);
        }
        let id_limit = if g.cfg.extended { 0x2000_0000 } else { 0x800 };
        if let Mode::Fixed(id) = g.cfg.id {
            if id >= id_limit {
                return Err(if g.cfg.extended {
                    FrameError::ExtIdOutOfRange(id)
                } else {
                    FrameError::StdIdOutOfRange(id)
                });
            }
        }
        if let Mode::Fixed(len) = g.cfg.len {
            if fd && !FD_LENGTHS.contains(&len) {
                return Err(FrameError::FdLengthNotAllowed(len as usize));
            }
            if !fd && len > 8 {
                return Err(FrameError::ClassicTooLong(len as usize));
            }
        }
        if let Mode::Fixed(p) = &g.cfg.data {
            let max = if fd { 64 } else { 8 };
            if p.len > max {
                return Err(if fd {
                    FrameError::FdLengthNotAllowed(p.len as usize)
                } else {
                    FrameError::ClassicTooLong(p.len as usize)
                });
            }
        }
        // Validate one frame now so that a bad combination fails before anything is sent.
        g.clone().next_frame().validate()?;
        Ok(g)
    }

    fn random(&mut self) -> u64 {
        // xorshift64*: fast, no allocation, good enough for test traffic.
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// The next frame (timestamp, channel and sender left empty).
    // Inlined into the sending loop so the frame is built in place, not copied out.
    #[inline]
    pub fn next_frame(&mut self) -> CanFrame {
        let n = self.counter;
        self.counter = self.counter.wrapping_add(1);
        let cfg_fd = self.cfg.fd;
        let id_limit: u64 = if self.cfg.extended {
            0x2000_0000
        } else {
            0x800
        };
        let id = match self.cfg.id {
            // Both limits are powers of two: a mask is the same as `%`, without a division.
            Mode::Random => (self.random() & (id_limit - 1)) as u32,
            Mode::Increment => (n % id_limit) as u32,
            Mode::Fixed(id) => id,
        };
        let len = if let Mode::Fixed(p) = &self.cfg.data {
            if matches!(self.cfg.len, Mode::Fixed(_)) {
                self.fixed_len()
            } else {
                fit_len(p.len, cfg_fd)
            }
        } else {
            match self.cfg.len {
                Mode::Random => {
                    let r = self.random();
                    if cfg_fd {
                        FD_LENGTHS[(r % 16) as usize]
                    } else {
                        (r % 9) as u8
                    }
                }
                Mode::Increment => {
                    if cfg_fd {
                        FD_LENGTHS[(n % 16) as usize]
                    } else {
                        (n % 9) as u8
                    }
                }
                Mode::Fixed(_) => self.fixed_len(),
            }
        };
        let mut f = CanFrame::EMPTY;
        f.id = id;
        f.len = len;
        f.flags = if self.cfg.extended {
            flags::EXTENDED
        } else {
            0
        };
        if self.cfg.remote {
            f.flags |= flags::RTR;
            f.len = len.min(8);
            return f;
        }
        if cfg_fd {
            f.flags |= flags::FD;
            if self.cfg.brs {
                f.flags |= flags::BRS;
            }
            if self.cfg.esi {
                f.flags |= flags::ESI;
            }
        }
        let len = len as usize;
        match &self.cfg.data {
            Mode::Random => {
                let mut i = 0;
                while i < len {
                    let r = self.random().to_le_bytes();
                    let k = (len - i).min(8);
                    f.data[i..i + k].copy_from_slice(&r[..k]);
                    i += k;
                }
            }
            Mode::Increment => {
                // cangen -D i: the payload is a little-endian counter.
                let c = n.to_le_bytes();
                for (i, b) in f.data[..len].iter_mut().enumerate() {
                    *b = if i < 8 { c[i] } else { 0 };
                }
            }
            Mode::Fixed(p) => {
                let k = len.min(p.len as usize);
                f.data[..k].copy_from_slice(&p.bytes[..k]);
            }
        }
        f
    }

    fn fixed_len(&self) -> u8 {
        match self.cfg.len {
            Mode::Fixed(l) => l,
            _ => 0,
        }
    }
}

/// When frames are due at a steady rate: frame `k` (from 0) is due `k / rate` seconds
/// after the start. Counting from the start, not adding a rounded gap per frame, keeps
/// the long-run rate exact at any rate, and a sender that fell behind (a stall, a busy
/// machine) catches up at once instead of drifting.
#[derive(Debug, Clone, Copy)]
pub struct Pacer {
    /// Frames due after `t` ns: `t * num / den` (+ 1), in integers so that no rounding
    /// creeps in: a rate is `num` micro-frames per `den` = 10^15 ns, a gap 1 per `den` ns.
    num: u128,
    den: u128,
}

impl Pacer {
    /// Frames per second (to a millionth of a frame); `None` unless finite and > 0.
    pub fn per_second(rate: f64) -> Option<Pacer> {
        (rate.is_finite() && rate > 0.0).then(|| Pacer {
            num: ((rate * 1e6).round() as u128).max(1),
            den: 1_000_000_000_000_000,
        })
    }

    /// A fixed gap between frames (cangen's `-g`); zero means unpaced.
    pub fn gap(gap: std::time::Duration) -> Option<Pacer> {
        (!gap.is_zero()).then_some(Pacer {
            num: 1,
            den: gap.as_nanos(),
        })
    }

    /// Frames due `elapsed_ns` after the start: the first is due at once.
    pub fn due(&self, elapsed_ns: u64) -> u64 {
        // Both products fit u128 for any u64 time and a rate up to 10^17 frames/s; a
        // huge `-g` gap makes `den` large, which only shrinks them (or saturates).
        let n = (u128::from(elapsed_ns).saturating_mul(self.num) / self.den).saturating_add(1);
        u64::try_from(n).unwrap_or(u64::MAX)
    }

    /// Nanoseconds after the start at which frame `k` (from 0) is due.
    pub fn due_at_ns(&self, k: u64) -> u64 {
        let t = u128::from(k).saturating_mul(self.den).div_ceil(self.num);
        u64::try_from(t).unwrap_or(u64::MAX)
    }
}

/// The smallest allowed length that holds `n` bytes.
fn fit_len(n: u8, fd: bool) -> u8 {
    if !fd {
        return n.min(8);
    }
    *FD_LENGTHS.iter().find(|&&l| l >= n).unwrap_or(&64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mode_makes_valid_frames() {
        let combos = [
            (false, false, false, false, false),
            (true, false, false, false, false),
            (false, true, false, false, false),
            (true, true, true, false, false),
            (false, true, false, true, false),
            (true, false, false, false, true),
        ];
        for (ext, fd, brs, esi, remote) in combos {
            for (id, len, data) in [("r", "r", "r"), ("i", "i", "i"), ("123", "8", "DEADBEEF")] {
                let cfg = GenConfig {
                    id: parse_id_mode(id).unwrap(),
                    len: parse_len_mode(len).unwrap(),
                    data: parse_data_mode(data).unwrap(),
                    extended: ext,
                    fd,
                    brs,
                    esi,
                    remote,
                    ..GenConfig::default()
                };
                let mut g = Generator::new(cfg).unwrap();
                for _ in 0..2000 {
                    let f = g.next_frame();
                    f.validate().unwrap_or_else(|e| panic!("{f}: {e}"));
                    assert_eq!(f.is_extended(), ext);
                    assert_eq!(f.is_fd(), fd || brs || esi);
                    assert_eq!(f.is_remote(), remote);
                }
            }
        }
    }

    #[test]
    fn increment_and_fixed() {
        let mut g = Generator::new(GenConfig {
            id: Mode::Increment,
            len: Mode::Fixed(2),
            data: Mode::Increment,
            ..GenConfig::default()
        })
        .unwrap();
        let a = g.next_frame();
        let b = g.next_frame();
        assert_eq!((a.id, b.id), (0, 1));
        assert_eq!((a.payload(), b.payload()), (&[0u8, 0][..], &[1u8, 0][..]));

        let mut g = Generator::new(GenConfig {
            id: Mode::Fixed(0x42),
            data: parse_data_mode("AABB").unwrap(),
            ..GenConfig::default()
        })
        .unwrap();
        let f = g.next_frame();
        assert_eq!((f.id, f.payload()), (0x42, &[0xAA, 0xBB][..]));
    }

    #[test]
    fn pacer_keeps_the_rate_exact_where_a_rounded_gap_would_drift() {
        // 30 M/s: a gap rounded to 33 ns would send 1 % too many.
        let p = Pacer::per_second(30e6).unwrap();
        assert_eq!(p.due(0), 1);
        assert_eq!(p.due(1_000_000_000) - 1, 30_000_000);
        assert_eq!(p.due(10_000_000_000) - 1, 300_000_000);
        // Frame k is due at due_at_ns(k), not before.
        for k in [1u64, 2, 3, 29_999_999, 30_000_000] {
            let at = p.due_at_ns(k);
            assert_eq!(p.due(at), k + 1, "frame {k} due at {at}");
            assert_eq!(p.due(at - 1), k, "frame {k} not due at {}", at - 1);
        }
        let slow = Pacer::per_second(0.5).unwrap();
        assert_eq!(slow.due(1_999_999_999), 1);
        assert_eq!(slow.due(2_000_000_000), 2);
        let g = Pacer::gap(std::time::Duration::from_millis(40)).unwrap();
        assert_eq!(g.due(80_000_000), 3);
        assert!(Pacer::gap(std::time::Duration::ZERO).is_none());
        // A gap of centuries: nothing overflows, the second frame is never due.
        let huge = Pacer::gap(std::time::Duration::from_secs(u64::MAX)).unwrap();
        assert_eq!(huge.due(u64::MAX), 1);
        assert_eq!(huge.due_at_ns(u64::MAX), u64::MAX);
        assert!(Pacer::per_second(0.0).is_none());
        assert!(Pacer::per_second(f64::NAN).is_none());
    }

    #[test]
    fn refuses_bad_combinations() {
        let bad = |cfg: GenConfig| Generator::new(cfg).unwrap_err();
        assert_eq!(
            bad(GenConfig {
                id: Mode::Fixed(0x800),
                ..Default::default()
            }),
            FrameError::StdIdOutOfRange(0x800)
        );
        assert_eq!(
            bad(GenConfig {
                fd: true,
                remote: true,
                ..Default::default()
            }),
            FrameError::RemoteFd
        );
        assert_eq!(
            bad(GenConfig {
                fd: true,
                len: Mode::Fixed(9),
                ..Default::default()
            }),
            FrameError::FdLengthNotAllowed(9)
        );
        assert_eq!(parse_id_mode("xyz"), Err(ModeError::Id("xyz".into())));
        assert_eq!(
            parse_id_mode("xyz").unwrap_err().to_string(),
            "hex ID mode 'xyz' is not 'r' (random), 'i' (increment) or a hex ID"
        );
        assert_eq!(parse_len_mode("-1"), Err(ModeError::Len("-1".into())));
        assert_eq!(parse_data_mode("ABC"), Err(ModeError::Data("ABC".into())));
        assert!(parse_data_mode("ABC")
            .unwrap_err()
            .to_string()
            .starts_with("hex payload mode 'ABC'"));
    }
}
