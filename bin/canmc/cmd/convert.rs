//! `canmc convert`: one capture format into another.

use canmc::convert::{self as conv, FileFormat, ReadOptions, WriterOptions};

use crate::cli::ConvertArgs;
use crate::term::Progress;
use crate::{convert_failure, stopped, Failure};

pub(crate) fn run(a: ConvertArgs) -> Result<(), Failure> {
    if let Some(dbc) = &a.dbc {
        return super::signals::convert_to_csv(&a, dbc);
    }
    let in_format = FileFormat::from_path(&a.input).map_err(|e| Failure::usage(e.to_string()))?;
    let out_format = a
        .out
        .format(&a.output)
        .map_err(|e| Failure::usage(e.to_string()))?;
    if !a.input.exists() {
        return Err(Failure::runtime(format!(
            "{}: no such file",
            a.input.display()
        )));
    }
    let total_bytes = std::fs::metadata(&a.input).map(|m| m.len()).unwrap_or(0);
    let mut opts = WriterOptions {
        trc_version: if a.trc_version == "1.1" {
            conv::trc::TrcVersion::V1_1
        } else {
            conv::trc::TrcVersion::V2_1
        },
        blf_uncompressed: a.blf_uncompressed,
        ..WriterOptions::default()
    };
    a.out.apply(&mut opts);
    let writer = conv::create_writer(&a.output, out_format, opts).map_err(convert_failure)?;
    // The writer on a thread of its own: reading and writing then use two cores
    // (Parquet's writer has its own threads already). docs/perf.md, "Conversions".
    let mut writer: Box<dyn conv::FrameWriter> = if out_format == FileFormat::Parquet {
        writer
    } else {
        Box::new(conv::pipeline::Pipelined::new(&a.output, writer).map_err(convert_failure)?)
    };
    let mut progress = Progress::new(total_bytes, in_format);
    let mut write_error = None;
    let read = conv::read_events(
        &a.input,
        in_format,
        ReadOptions {
            skip_bad: a.skip_bad,
            ..ReadOptions::default()
        },
        &mut |event| {
            if let Err(e) = writer.write_event(event) {
                write_error = Some(e);
                return false;
            }
            progress.tick();
            !stopped()
        },
    );
    progress.clear();
    let finished = writer.finish();
    if let Some(e) = write_error {
        return Err(convert_failure(e));
    }
    let stats = read.map_err(convert_failure)?;
    finished.map_err(convert_failure)?;
    stats.check(&a.input).map_err(|e| {
        Failure::runtime(format!(
            "{e}; the events before it are in {}",
            a.output.display()
        ))
    })?;
    eprintln!(
        "canmc convert: {} events from {} ({}) to {} ({}){}{}",
        stats.events,
        a.input.display(),
        in_format.name(),
        a.output.display(),
        out_format.name(),
        if stats.skipped > 0 {
            format!(", {} bad lines skipped", stats.skipped)
        } else {
            String::new()
        },
        if stats.other_objects > 0 {
            format!(", {} objects without a frame skipped", stats.other_objects)
        } else {
            String::new()
        }
    );
    Ok(())
}
