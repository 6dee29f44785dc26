//! The operating-system helpers that belong to no data-path stage: the wall clock, the
//! host name, CPU pinning. Private to the crate; what embedders need is re-exported where
//! it is used ([`crate::now_ns`], [`crate::engine::pin_current_thread`]).

#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

use std::io;

/// Nanoseconds since the Unix epoch by the system clock (the clock of
/// [`CanFrame::timestamp_ns`](crate::CanFrame::timestamp_ns)); 0 if the clock is set
/// before 1970.
pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// The host name, or `"?"` when the system has none to give.
pub(crate) fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: `buf` is writable for its length; gethostname NUL-terminates within it
    // on success (we also bound the read by the length).
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "?".into();
    }
    let n = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Pins the calling thread to one CPU (sched_setaffinity).
pub fn pin_current_thread(cpu: usize) -> io::Result<()> {
    let setsize = libc::CPU_SETSIZE as usize;
    if cpu >= setsize {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "cannot pin to CPU {cpu}: sched_setaffinity addresses CPUs 0-{}",
                setsize - 1
            ),
        ));
    }
    // SAFETY: cpu_set_t is a plain bit array; all zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu < CPU_SETSIZE`, so the bit lies inside `set`.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: pid 0 means the calling thread; `set` is a valid cpu_set_t of the size
    // passed, and the kernel only reads it.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("cannot pin to CPU {cpu}: {e}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_and_host_name_answer() {
        // 2020-01-01 in ns: a clock this far behind is broken, not merely early.
        assert!(now_ns() > 1_577_836_800_000_000_000);
        assert!(!host_name().is_empty());
    }
}
