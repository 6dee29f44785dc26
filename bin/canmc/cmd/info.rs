//! `canmc info`: what a capture file holds. The statistics are the library's
//! [`CaptureStats`]; this opens the file, feeds them, and prints.

use canmc::convert::{self as conv, FileFormat, ReadOptions};
use canmc::record::End;
use canmc::stats::{CaptureStats, CaptureSummary};
use serde::Serialize;

use crate::cli::InfoArgs;
use crate::{convert_failure, Failure};

/// `info --json`: the file, its format, the statistics, and how reading ended.
#[derive(Serialize)]
struct InfoJson<'a> {
    file: &'a str,
    format: &'a str,
    #[serde(flatten)]
    stats: CaptureSummary,
    skipped_lines: u64,
    end: &'static str,
}

pub(crate) fn run(a: InfoArgs) -> Result<(), Failure> {
    let format = FileFormat::from_path(&a.file).map_err(|e| Failure::usage(e.to_string()))?;
    if !a.file.exists() {
        return Err(Failure::runtime(format!(
            "{}: no such file",
            a.file.display()
        )));
    }
    let mut stats = CaptureStats::new();
    let read = conv::read_events(
        &a.file,
        format,
        ReadOptions {
            skip_bad: a.skip_bad,
            start_ns: None,
        },
        &mut |event| {
            stats.add(event);
            true
        },
    )
    .map_err(convert_failure)?;
    if a.json {
        let file = a.file.display().to_string();
        let json = InfoJson {
            file: &file,
            format: format.name(),
            stats: stats.summary(10),
            skipped_lines: read.skipped,
            end: end_word(read.cmc_end),
        };
        match serde_json::to_string(&json) {
            Ok(text) => println!("{text}"),
            Err(e) => return Err(Failure::runtime(format!("cannot write JSON: {e}"))),
        }
        return read.check(&a.file).map_err(convert_failure);
    }
    println!("{} ({})", a.file.display(), format.name());
    print!("{stats}");
    if read.skipped > 0 {
        println!("  skipped    {} lines that do not parse", read.skipped);
    }
    if read.cmc_end.is_some() {
        let why = match read.cmc_end {
            Some(End::Unfinished) => " (the writer did not finish: killed, or still running)",
            _ => "",
        };
        println!("  end        {}{why}", end_word(read.cmc_end));
    }
    read.check(&a.file).map_err(convert_failure)
}

/// How a `.cmc` ended, in one word for `info` (`-` for other formats).
fn end_word(end: Option<End>) -> &'static str {
    match end {
        None => "-",
        Some(End::Finished) => "finished",
        Some(End::Unfinished) => "unfinished",
        Some(End::Truncated { .. }) => "truncated",
        Some(End::Corrupt { .. }) => "corrupt",
    }
}
