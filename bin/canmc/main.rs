//! `canmc`: the command line. It parses arguments, builds library objects and reports;
//! everything that touches frames or sockets lives in the library.
//!
//! `main.rs` parses, installs the signal handlers, dispatches to one `cmd/` module per
//! command and turns a [`Failure`] into one line on stderr and an exit code; `cli.rs`
//! holds the flags, `term.rs` what is drawn on the terminal.

use std::io;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};

use canmc::convert as conv;
use clap::Parser;

// The standard print macros panic when the stream is gone (a closed pipe, a full disk
// under a redirect). A command line never panics on its output: these shadow them
// and drop what cannot be written.
macro_rules! println {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}
macro_rules! print {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout(), $($t)*);
    }};
}
macro_rules! eprintln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($t)*);
    }};
}
mod cli;
mod cmd;
mod term;
mod tui;

use cli::{Cli, Command};

/// A failure worth one line on stderr, and the exit code that goes with it.
pub(crate) struct Failure {
    pub(crate) message: String,
    pub(crate) code: u8,
}

impl Failure {
    pub(crate) fn usage(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            code: 2,
        }
    }
    pub(crate) fn runtime(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            code: 1,
        }
    }
}

/// Set by SIGINT or SIGTERM; every command polls it through [`stopped`] and winds down
/// (a recorder drains what had arrived, a sender flushes what is queued).
static STOP: LazyLock<Arc<AtomicBool>> = LazyLock::new(|| Arc::new(AtomicBool::new(false)));

/// SIGINT and SIGTERM set [`STOP`] instead of ending the process (signal-hook's handler
/// only stores to the atomic, which is async-signal-safe).
fn install_signal_handlers() {
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(sig, Arc::clone(&STOP)) {
            eprintln!("canmc: warning: cannot catch signal {sig}: {e}");
        }
    }
}

/// True once SIGINT or SIGTERM arrived.
pub(crate) fn stopped() -> bool {
    STOP.load(Ordering::Relaxed)
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion)
                || e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            {
                let _ = e.print();
                return if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                    ExitCode::from(2)
                } else {
                    ExitCode::SUCCESS
                };
            }
            // clap's message spans several lines; the first says what is wrong.
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("bad arguments");
            let first = first.strip_prefix("error: ").unwrap_or(first);
            eprintln!("canmc: {first} (see 'canmc --help')");
            return ExitCode::from(2);
        }
    };
    install_signal_handlers();
    let result = match cli.command {
        Command::Send(a) => cmd::send::run(a),
        Command::Dump(a) => cmd::dump::run(a),
        Command::Gen(a) => cmd::gen::run(a),
        Command::Ping(a) => cmd::ping::run(a),
        Command::Record(a) => cmd::record::run(a),
        Command::Replay(a) => cmd::replay::run(a),
        Command::Convert(a) => cmd::convert::run(a),
        Command::Info(a) => cmd::info::run(a),
        Command::Top(a) => cmd::top::run(a),
        Command::Plot(a) => cmd::plot::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("canmc: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

pub(crate) fn io_failure(what: &str, e: io::Error) -> Failure {
    Failure::runtime(format!("{what}: {e}"))
}

pub(crate) fn convert_failure(e: conv::ConvertError) -> Failure {
    Failure::runtime(e.to_string())
}
