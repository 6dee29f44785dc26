//! `canmc send`: frames in cansend syntax onto the group.

use canmc::frame::CanFrame;
use canmc::socket::SendSocket;

use super::now_ns;
use crate::cli::SendArgs;
use crate::{io_failure, Failure};

pub(crate) fn run(a: SendArgs) -> Result<(), Failure> {
    let cfg = a.net.config().map_err(|e| Failure::usage(e.to_string()))?;
    let channel = a.opts.channel().map_err(Failure::usage)?;
    // Parse everything first: one bad frame means nothing is sent.
    let mut frames = Vec::with_capacity(a.frames.len());
    for text in &a.frames {
        let mut f: CanFrame = text
            .parse()
            .map_err(|e| Failure::usage(format!("frame '{text}': {e}")))?;
        f.channel = channel;
        frames.push(f);
    }
    let sock = SendSocket::open(&cfg).map_err(|e| io_failure("cannot open sender", e))?;
    let mut tx = a.opts.sender(sock, a.net.key()?)?;
    for f in &mut frames {
        f.timestamp_ns = now_ns();
        tx.send(f, f.timestamp_ns)
            .map_err(|e| io_failure("send failed", e))?;
    }
    tx.flush(now_ns())
        .map_err(|e| io_failure("send failed", e))?;
    Ok(())
}
