//! `canmc dump`: frames from the group on stdout, as candump prints them.

use std::io::{self, Write};

use canmc::convert::candump::{write_log_line, ScreenFormat};
use canmc::filter::FilterSet;
use canmc::view::dbc::Dbc;
use canmc::wire::native::Role;
use canmc::Event;

use super::receiver::run_receiver;
use crate::cli::DumpArgs;
use crate::term::print_summary;
use crate::{io_failure, Failure};

pub(crate) fn run(a: DumpArgs) -> Result<(), Failure> {
    let filters = FilterSet::new(a.filters.clone());
    let dbc = match &a.dbc {
        Some(p) => Some(Dbc::open(p).map_err(|e| Failure::usage(format!("--dbc {e}")))?),
        None => None,
    };
    let stdout = io::stdout();
    let mut out = io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut line = Vec::with_capacity(512);
    let mut screen = ScreenFormat::new(a.time.unwrap_or_default());
    let mut broken_pipe = false;
    let out_cell = std::cell::RefCell::new(&mut out);
    let result = run_receiver(
        "dump",
        &a.net,
        &a.recv,
        Role::Dump,
        &filters,
        &mut |event| {
            let Event::Frame(frame) = event else {
                return Ok(true);
            };
            if a.quiet {
                return Ok(true);
            }
            line.clear();
            if a.log {
                write_log_line(frame, &mut line);
            } else {
                screen.write_line(frame, &mut line);
            }
            if let Some(dbc) = &dbc {
                dbc.describe(frame, &mut line);
            }
            match out_cell.borrow_mut().write_all(&line) {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                    broken_pipe = true;
                    Ok(false)
                }
                Err(e) => Err(io_failure("cannot write output", e)),
            }
        },
        &mut || {
            let _ = out_cell.borrow_mut().flush();
        },
    );
    let _ = out.flush();
    drop(out);
    let sum = result?;
    if !broken_pipe {
        print_summary(&sum, a.recv.json);
    }
    Ok(())
}
