//! [`MappedFile`]: a read-only file mapping that survives the file shrinking under it.
//!
//! Touching a mapped page that lies past the end of its file raises `SIGBUS`, which kills
//! the process — and another process may truncate a recording while `replay`, `convert`
//! or an embedding application reads it. This module installs (once, on first use) a
//! `SIGBUS` handler that recognises faults inside a registered mapping, puts a page of
//! zeros over the faulting page, and lets the access run again. Zeros read as an
//! uncommitted record, so the reader ends there like at a crashed writer's tail, and
//! [`MappedFile::truncated`] tells it why.
//!
//! Faults anywhere else go to the handler that was installed before (Rust's own
//! stack-overflow handler, or the default action), so behaviour outside canmc's mappings
//! is unchanged. At most [`SLOTS`] mappings are guarded at once; further ones work as a
//! plain mapping would (a truncation under them is fatal).

use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::OnceLock;

use memmap2::Mmap;

/// How many mappings can be guarded at once: at the default 64 MiB per segment, a
/// 256 GiB recording.
pub(crate) const SLOTS: usize = 4096;

const FREE: u8 = 0;
const CLAIMED: u8 = 1;
const ACTIVE: u8 = 2;

/// One guarded address range. The handler reads `start`/`len` only in state `ACTIVE`,
/// and a slot becomes `ACTIVE` only after both are stored.
struct Slot {
    state: AtomicU8,
    start: AtomicUsize,
    len: AtomicUsize,
    hit: AtomicBool,
}

#[allow(clippy::declare_interior_mutable_const)] // only an initialiser for the array
const EMPTY: Slot = Slot {
    state: AtomicU8::new(FREE),
    start: AtomicUsize::new(0),
    len: AtomicUsize::new(0),
    hit: AtomicBool::new(false),
};

static TABLE: [Slot; SLOTS] = [EMPTY; SLOTS];
static PAGE: AtomicUsize = AtomicUsize::new(4096);

/// The disposition before ours (`None` until installed; `Err` if installing failed).
static PREVIOUS: OnceLock<Result<libc::sigaction, i32>> = OnceLock::new();

/// A read-only mapping of a whole file, guarded against the file shrinking.
#[derive(Debug)]
pub(crate) struct MappedFile {
    // Declared before `map`: the slot is released before the memory is unmapped, so the
    // handler never claims an address that could already belong to another mapping.
    slot: Option<usize>,
    map: Mmap,
}

impl MappedFile {
    /// Maps `file` read-only and registers the mapping with the `SIGBUS` guard.
    pub(crate) fn map(file: &File) -> io::Result<MappedFile> {
        // SAFETY: a read-only private view; every Rust access goes through `Deref`, which
        // bounds it by the mapping's length. The file may be appended to (records are
        // immutable once committed, so what was read stays true) or truncated (the guard
        // below turns the pages past the new end into zeros instead of SIGBUS).
        let map = unsafe { Mmap::map(file) }?;
        let slot = if map.is_empty() {
            None
        } else {
            register(map.as_ptr() as usize, map.len())
        };
        Ok(MappedFile { slot, map })
    }

    /// True if the file was found shorter than the mapping: some pages of it now read as
    /// zeros instead of what the file held when it was mapped.
    pub(crate) fn truncated(&self) -> bool {
        self.slot
            .is_some_and(|i| TABLE[i].hit.load(Ordering::Relaxed))
    }

    /// True if a truncation would be survived (the guard is installed and had a slot).
    #[cfg(test)]
    pub(crate) fn guarded(&self) -> bool {
        self.slot.is_some()
    }
}

impl std::ops::Deref for MappedFile {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.map
    }
}

impl Drop for MappedFile {
    fn drop(&mut self) {
        if let Some(i) = self.slot {
            TABLE[i].state.store(FREE, Ordering::Release);
        }
        // `map` is unmapped after this, by its own Drop.
    }
}

fn register(start: usize, len: usize) -> Option<usize> {
    if install().is_err() {
        return None;
    }
    for (i, slot) in TABLE.iter().enumerate() {
        if slot
            .state
            .compare_exchange(FREE, CLAIMED, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            slot.start.store(start, Ordering::Relaxed);
            slot.len.store(len, Ordering::Relaxed);
            slot.hit.store(false, Ordering::Relaxed);
            slot.state.store(ACTIVE, Ordering::Release);
            return Some(i);
        }
    }
    None
}

fn install() -> Result<(), i32> {
    PREVIOUS
        .get_or_init(|| {
            // SAFETY: sysconf has no preconditions.
            let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
            if page > 0 {
                PAGE.store(page as usize, Ordering::Relaxed);
            }
            // SAFETY: `sigaction` structs are plain C data, valid when zeroed; the
            // handler below only does async-signal-safe work (atomics, mmap, sigaction,
            // raise) and `old` is written by the kernel before we read it.
            unsafe {
                let mut new: libc::sigaction = std::mem::zeroed();
                new.sa_sigaction = on_sigbus as *const () as usize;
                new.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
                libc::sigemptyset(&mut new.sa_mask);
                let mut old: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(libc::SIGBUS, &new, &mut old) != 0 {
                    return Err(io::Error::last_os_error().raw_os_error().unwrap_or(0));
                }
                Ok(old)
            }
        })
        .as_ref()
        .map(|_| ())
        .map_err(|&e| e)
}

extern "C" fn on_sigbus(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler.
    let addr = unsafe { (*info).si_addr() } as usize;
    let page = PAGE.load(Ordering::Relaxed);
    for slot in &TABLE {
        if slot.state.load(Ordering::Acquire) != ACTIVE {
            continue;
        }
        let (start, len) = (
            slot.start.load(Ordering::Relaxed),
            slot.len.load(Ordering::Relaxed),
        );
        if addr < start || addr - start >= len {
            continue;
        }
        let at = addr & !(page - 1);
        // SAFETY: `at` is a page inside a live read-only mapping that this module owns
        // (the slot is ACTIVE until the mapping is dropped); replacing that page with an
        // anonymous zero page changes no memory anyone else owns, and the faulting read
        // then sees zeros. mmap is a plain system call, safe in a signal handler.
        let p = unsafe {
            libc::mmap(
                at as *mut libc::c_void,
                page,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                -1,
                0,
            )
        };
        if p != libc::MAP_FAILED {
            slot.hit.store(true, Ordering::Relaxed);
            return;
        }
        break;
    }
    // Not ours (or the zero page could not be placed): what would have happened
    // without canmc.
    if let Some(Ok(prev)) = PREVIOUS.get() {
        let handler = prev.sa_sigaction;
        if handler != libc::SIG_DFL && handler != libc::SIG_IGN {
            if prev.sa_flags & libc::SA_SIGINFO != 0 {
                // SAFETY: the previous handler was installed for SIGBUS with SA_SIGINFO,
                // so it has this signature and expects these arguments.
                let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                    unsafe { std::mem::transmute(handler) };
                f(sig, info, ctx);
            } else {
                // SAFETY: as above, for a handler installed without SA_SIGINFO.
                let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(handler) };
                f(sig);
            }
            return;
        }
    }
    // SAFETY: restoring the default action and re-raising are async-signal-safe; the
    // signal stays blocked until this handler returns, then the default action (a core
    // dump) runs as if no handler had been installed.
    unsafe {
        let mut dfl: libc::sigaction = std::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        libc::sigaction(libc::SIGBUS, &dfl, std::ptr::null_mut());
        libc::raise(sig);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_file_truncated_under_its_mapping_reads_zeros_and_says_so() {
        let path = std::env::temp_dir().join(format!("canmc-mapped-{}", std::process::id()));
        let mut f = File::create(&path).unwrap();
        f.write_all(&vec![0xA5u8; 64 * 1024]).unwrap();
        let f = File::open(&path).unwrap();
        let m = MappedFile::map(&f).unwrap();
        assert!(m.guarded());
        assert_eq!(m[60_000], 0xA5);
        assert!(!m.truncated());
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(10_000)
            .unwrap();
        // Before the cut: still the file's bytes. After it: zeros, and no SIGBUS.
        assert_eq!(m[9_999], 0xA5);
        assert!(m[16_384..].iter().all(|&b| b == 0));
        assert!(m.truncated());
        drop(m);
        let _ = std::fs::remove_file(&path);
    }
}
