//! `canmc convert --dbc FILE IN OUT.csv`: a capture's frames decoded into one CSV row
//! per signal.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

use canmc::convert::{self as conv, FileFormat, ReadOptions};
use canmc::engine::Event;
use canmc::view::dbc::{Dbc, SignalCsv};

use crate::cli::ConvertArgs;
use crate::term::Progress;
use crate::{convert_failure, stopped, Failure};

pub(crate) fn convert_to_csv(a: &ConvertArgs, dbc_path: &Path) -> Result<(), Failure> {
    let is_csv = a
        .output
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    if !is_csv {
        return Err(Failure::usage(format!(
            "--dbc writes decoded signals as CSV: {} must end in .csv",
            a.output.display()
        )));
    }
    let dbc = Dbc::open(dbc_path).map_err(|e| Failure::usage(format!("--dbc {e}")))?;
    let in_format = FileFormat::from_path(&a.input).map_err(|e| Failure::usage(e.to_string()))?;
    if !a.input.exists() {
        return Err(Failure::runtime(format!(
            "{}: no such file",
            a.input.display()
        )));
    }
    let io_err = |e: std::io::Error| Failure::runtime(format!("{}: {e}", a.output.display()));
    let file = File::create(&a.output).map_err(io_err)?;
    let mut csv = SignalCsv::new(BufWriter::with_capacity(1 << 16, file)).map_err(io_err)?;
    let total_bytes = std::fs::metadata(&a.input).map(|m| m.len()).unwrap_or(0);
    let mut progress = Progress::new(total_bytes, in_format);
    let mut write_error = None;
    let mut frames = 0u64;
    let read = conv::read_events(
        &a.input,
        in_format,
        ReadOptions {
            skip_bad: a.skip_bad,
            start_ns: None,
        },
        &mut |event| {
            if let Event::Frame(f) = event {
                frames += 1;
                if let Err(e) = csv.write_frame(&dbc, f) {
                    write_error = Some(e);
                    return false;
                }
            }
            progress.tick();
            !stopped()
        },
    );
    progress.clear();
    if let Some(e) = write_error {
        return Err(io_err(e));
    }
    let stats = read.map_err(convert_failure)?;
    let (rows, unknown) = (csv.rows, csv.unknown_frames);
    csv.finish().map_err(io_err)?;
    stats.check(&a.input).map_err(|e| {
        Failure::runtime(format!(
            "{e}; the signals before it are in {}",
            a.output.display()
        ))
    })?;
    eprintln!(
        "canmc convert: {frames} frames from {} decoded into {rows} signal rows in {} \
         ({unknown} frames not in the DBC)",
        a.input.display(),
        a.output.display()
    );
    Ok(())
}
