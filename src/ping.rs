//! `ping` (SPEC §8), both ends: the [`Pinger`] sends probes to the group and collects
//! the answers; the [`Responder`] (run by every engine that answers) replies to each
//! probe by unicast. The messages themselves are encoded in
//! [`wire::native`](crate::wire::native).
//!
//! ```no_run
//! use std::time::Duration;
//! use canmc::ping::Pinger;
//! use canmc::socket::McastConfig;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut pinger = Pinger::open(&McastConfig::loopback_v4(43113), None)?;
//! let report = pinger.run(1, Duration::from_millis(500), &|| false, &mut |_| {})?;
//! for a in &report.answers {
//!     println!("{} {} {} pid {} in {:?}", a.from, a.host, a.role, a.pid, a.rtt);
//! }
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

use std::collections::BTreeSet;
use std::fmt;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use crate::frame::SenderAddr;
use crate::socket::{McastConfig, SendSocket};
use crate::sys::now_ns;
use crate::wire::native::{self, AuthKey, PingAnswer, PingProbe, Role};

/// How this program describes itself in `ping` answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PingIdentity {
    /// What the program is doing.
    pub role: Role,
    /// Host name (cut to 64 bytes on the wire).
    pub host: String,
    /// Process id.
    pub pid: u32,
}

impl PingIdentity {
    /// This process, on this host, in `role`.
    pub fn this_process(role: Role) -> PingIdentity {
        PingIdentity {
            role,
            host: crate::sys::host_name(),
            pid: std::process::id(),
        }
    }
}

/// Answers `ping` probes by unicast to the prober, from a socket of its own (one per
/// address family, bound to an ephemeral port).
pub struct Responder {
    identity: PingIdentity,
    started: Instant,
    sender_id: u32,
    seq: u64,
    v4: Option<UdpSocket>,
    v6: Option<UdpSocket>,
    buf: [u8; native::ANSWER_LEN + native::TAG_LEN],
    key: Option<AuthKey>,
}

impl fmt::Debug for Responder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The key never goes into logs.
        f.debug_struct("Responder")
            .field("identity", &self.identity)
            .field("sender_id", &self.sender_id)
            .field("answers", &self.seq)
            .field("authenticated", &self.key.is_some())
            .finish()
    }
}

impl Responder {
    /// A responder answering as `identity`, sealing its answers with `key` if given.
    /// Opens its sockets now; a family it cannot open is not answered.
    pub fn new(identity: PingIdentity, key: Option<AuthKey>) -> Responder {
        Responder {
            identity,
            started: Instant::now(),
            sender_id: native::random_sender_id(),
            seq: 0,
            v4: UdpSocket::bind(("0.0.0.0", 0)).ok(),
            v6: UdpSocket::bind(("::", 0)).ok(),
            buf: [0; native::ANSWER_LEN + native::TAG_LEN],
            key,
        }
    }

    /// Sends the answer to `probe`, which came from `to`, reporting `frames_seen`;
    /// false when it could not be sent (no address, no socket of that family, or the
    /// kernel refused). A probe costs one `sendto`, never an allocation.
    pub fn answer(&mut self, probe: &PingProbe, to: SenderAddr, frames_seen: u64) -> bool {
        let Some(to) = to.get() else {
            return false;
        };
        let sock = if to.is_ipv4() { &self.v4 } else { &self.v6 };
        let Some(sock) = sock else { return false };
        let mut answer = PingAnswer::new(
            probe,
            self.identity.role,
            self.identity.pid,
            &self.identity.host,
        );
        answer.uptime_ms = self.started.elapsed().as_millis() as u64;
        answer.frames_seen = frames_seen;
        let mut n = native::encode_answer(&mut self.buf, self.sender_id, self.seq, &answer);
        if let Some(key) = &self.key {
            n = native::seal(&mut self.buf, n, key);
        }
        self.seq += 1;
        sock.send_to(&self.buf[..n], to).is_ok()
    }
}

/// One answer to one probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PingReply {
    /// Which round (1, 2, …) the answered probe belonged to.
    pub round: u32,
    /// Where the answer came from (the responder's socket).
    pub from: SocketAddr,
    /// The answering host's name.
    pub host: String,
    /// What the answering program is doing.
    pub role: Role,
    /// Its process id.
    pub pid: u32,
    /// How long it has been running, in milliseconds.
    pub uptime_ms: u64,
    /// Frames it has received so far.
    pub frames_seen: u64,
    /// Round-trip time (this host's clock at the answer, minus the probe's send time).
    pub rtt: Duration,
}

impl PingReply {
    /// The round-trip time in whole microseconds.
    pub fn rtt_us(&self) -> u64 {
        self.rtt.as_micros() as u64
    }
}

/// One JSON object: `round`, `from`, `host`, `role`, `pid`, `uptime_ms`,
/// `frames_seen`, `rtt_us` (the `ping --json` line).
impl serde::Serialize for PingReply {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(8))?;
        m.serialize_entry("round", &self.round)?;
        m.serialize_entry("from", &self.from)?;
        m.serialize_entry("host", &self.host)?;
        m.serialize_entry("role", self.role.name())?;
        m.serialize_entry("pid", &self.pid)?;
        m.serialize_entry("uptime_ms", &self.uptime_ms)?;
        m.serialize_entry("frames_seen", &self.frames_seen)?;
        m.serialize_entry("rtt_us", &self.rtt_us())?;
        m.end()
    }
}

/// Everything one [`Pinger::run`] heard.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PingReport {
    /// Every matching answer, in arrival order.
    pub answers: Vec<PingReply>,
    /// Rounds of probes sent.
    pub rounds: u32,
    /// Answers refused because their authentication failed (only with a key).
    pub bad_auth: u64,
}

impl PingReport {
    /// The distinct addresses that answered.
    pub fn receivers(&self) -> BTreeSet<SocketAddr> {
        self.answers.iter().map(|a| a.from).collect()
    }
}

/// Why a [`Pinger`] stopped.
#[derive(Debug)]
pub enum PingError {
    /// The probe could not be sent.
    Send(io::Error),
    /// Receiving answers failed (other than a timeout or an interruption).
    Receive(io::Error),
}

impl fmt::Display for PingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PingError::Send(e) => write!(f, "cannot send the probe: {e}"),
            PingError::Receive(e) => write!(f, "cannot receive answers: {e}"),
        }
    }
}

impl std::error::Error for PingError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PingError::Send(e) | PingError::Receive(e) => Some(e),
        }
    }
}

/// Sends `ping` probes to a group and collects the answers: each probe carries a fresh
/// id, answers to other probes (or, with a key, unauthenticated ones) are dropped, and
/// each answer's round-trip time comes from the send time the responder echoes.
pub struct Pinger {
    tx: SendSocket,
    replies: UdpSocket,
    sender_id: u32,
    key: Option<AuthKey>,
    probe_buf: [u8; native::PROBE_LEN + native::TAG_LEN],
    buf: Box<[u8; 2048]>,
    bad_auth: u64,
}

impl fmt::Debug for Pinger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The key never goes into logs.
        f.debug_struct("Pinger")
            .field("local_addr", &self.tx.local_addr())
            .field("sender_id", &self.sender_id)
            .field("authenticated", &self.key.is_some())
            .field("bad_auth", &self.bad_auth)
            .finish()
    }
}

/// Longest a receive waits before the pinger checks its stop flag again.
const STOP_CHECK: Duration = Duration::from_millis(100);

impl Pinger {
    /// Opens a sender on `net`'s group that also receives the unicast answers. With a
    /// key, probes are sealed with it and only answers authenticated with it count.
    pub fn open(net: &McastConfig, key: Option<AuthKey>) -> io::Result<Pinger> {
        let tx = SendSocket::open_for_replies(net)?;
        let replies = tx.try_clone_udp()?;
        Ok(Pinger {
            tx,
            replies,
            sender_id: native::random_sender_id(),
            key,
            probe_buf: [0; native::PROBE_LEN + native::TAG_LEN],
            buf: Box::new([0; 2048]),
            bad_auth: 0,
        })
    }

    /// Answers refused so far because their authentication failed.
    pub fn bad_auth(&self) -> u64 {
        self.bad_auth
    }

    /// Sends `count` rounds of probes, each followed by `wait` for its answers, calling
    /// `on_answer` as each matching answer arrives. `stop` is asked at least every
    /// 100 ms; when it says true, the run ends with what it has.
    pub fn run(
        &mut self,
        count: u32,
        wait: Duration,
        stop: &dyn Fn() -> bool,
        on_answer: &mut dyn FnMut(&PingReply),
    ) -> Result<PingReport, PingError> {
        let mut report = PingReport::default();
        let bad_before = self.bad_auth;
        for round in 1..=count {
            if stop() {
                break;
            }
            report.rounds = round;
            self.round(round, wait, stop, &mut |a| {
                on_answer(&a);
                report.answers.push(a);
            })?;
        }
        report.bad_auth = self.bad_auth - bad_before;
        Ok(report)
    }

    /// Sends one probe (numbered `round`) and collects its answers for `wait` (or until
    /// `stop` says true).
    pub fn round(
        &mut self,
        round: u32,
        wait: Duration,
        stop: &dyn Fn() -> bool,
        on_answer: &mut dyn FnMut(PingReply),
    ) -> Result<(), PingError> {
        let probe = PingProbe {
            probe_id: u64::from(native::random_sender_id()) << 32 | u64::from(round),
            sent_ns: now_ns(),
        };
        let mut n = native::encode_probe(
            &mut self.probe_buf,
            self.sender_id,
            u64::from(round),
            &probe,
        );
        if let Some(key) = &self.key {
            n = native::seal(&mut self.probe_buf, n, key);
        }
        self.tx
            .send(&self.probe_buf[..n])
            .map_err(PingError::Send)?;
        let deadline = Instant::now() + wait;
        while !stop() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let _ = self.replies.set_read_timeout(Some(left.min(STOP_CHECK)));
            let (len, from) = match self.replies.recv_from(&mut self.buf[..]) {
                Ok(r) => r,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) =>
                {
                    continue
                }
                Err(e) => return Err(PingError::Receive(e)),
            };
            let key = self.key.as_ref();
            if let Some(reply) = accept(
                key,
                &mut self.bad_auth,
                &self.buf[..len],
                from,
                &probe,
                round,
            ) {
                on_answer(reply);
            }
        }
        Ok(())
    }
}

/// The reply `datagram` from `from` makes to `probe`, if it is an answer to it; with a
/// key, one that fails authentication is counted in `bad_auth` and dropped.
fn accept(
    key: Option<&AuthKey>,
    bad_auth: &mut u64,
    datagram: &[u8],
    from: SocketAddr,
    probe: &PingProbe,
    round: u32,
) -> Option<PingReply> {
    if let Some(key) = key {
        if native::verify(datagram, key).is_err() {
            *bad_auth += 1;
            return None;
        }
    }
    let (_, answer) = native::decode_answer(datagram).ok()?;
    if answer.probe_id != probe.probe_id {
        return None;
    }
    Some(PingReply {
        round,
        from,
        host: answer.host().to_owned(),
        role: answer.role,
        pid: answer.pid,
        uptime_ms: answer.uptime_ms,
        frames_seen: answer.frames_seen,
        rtt: Duration::from_nanos(now_ns().saturating_sub(answer.probe_sent_ns)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The responder's answer, caught on a unicast socket of 127.0.0.1, is the one a
    /// pinger accepts: same probe, identity, frames seen; sealed when keyed.
    #[test]
    fn responder_answer_is_what_the_pinger_accepts() {
        let catcher = UdpSocket::bind(("127.0.0.1", 0)).unwrap();
        catcher
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let to = SenderAddr::from(catcher.local_addr().unwrap());
        let identity = PingIdentity {
            role: Role::Dump,
            host: "h".repeat(100),
            pid: 77,
        };
        let probe = PingProbe {
            probe_id: 0xABCD_0001,
            sent_ns: now_ns(),
        };
        for key in [None, Some(AuthKey::from_bytes([3u8; 32]))] {
            let mut r = Responder::new(identity.clone(), key);
            assert!(r.answer(&probe, to, 9));
            let mut buf = [0u8; 2048];
            let (n, from) = catcher.recv_from(&mut buf).unwrap();
            let mut bad = 0;
            let reply = accept(key.as_ref(), &mut bad, &buf[..n], from, &probe, 1)
                .unwrap_or_else(|| panic!("{key:?}: answer not accepted"));
            assert_eq!(bad, 0);
            assert_eq!(
                (reply.role, reply.pid, reply.frames_seen),
                (Role::Dump, 77, 9)
            );
            assert_eq!(reply.host, "h".repeat(native::HOST_MAX), "cut to 64 bytes");
            // Another probe's pinger, or a pinger with another key, does not take it.
            let other = PingProbe {
                probe_id: 2,
                ..probe
            };
            assert!(accept(key.as_ref(), &mut bad, &buf[..n], from, &other, 1).is_none());
            assert!(accept(
                Some(&AuthKey::from_bytes([4u8; 32])),
                &mut bad,
                &buf[..n],
                from,
                &probe,
                1
            )
            .is_none());
            assert_eq!(bad, 1);
        }
        // No address to answer to: nothing sent.
        let mut r = Responder::new(identity, None);
        assert!(!r.answer(&probe, SenderAddr::default(), 0));
    }
}
