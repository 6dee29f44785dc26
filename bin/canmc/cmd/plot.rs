//! `canmc plot`: a capture's rates, busiest IDs, inter-arrival times and losses in an
//! HTML, SVG or PNG file.

use std::path::PathBuf;
use std::time::Instant;

use canmc::convert::{self as conv, FileFormat, ReadOptions};
use canmc::view::plot::PlotData;
use canmc::view::render::{self, PlotFormat, PlotOptions};
use clap::Args;

use crate::term::Progress;
use crate::{convert_failure, stopped, Failure};

/// `canmc plot` flags.
#[derive(Args)]
pub(crate) struct PlotArgs {
    /// A capture: .cmc, .log, .pcapng, .pcap or .asc.
    #[arg(value_name = "FILE")]
    pub(crate) input: PathBuf,
    /// Output: .html (one self-contained page), .svg or .png.
    #[arg(short = 'o', long = "output", value_name = "OUT")]
    pub(crate) output: PathBuf,
    /// How many of the busiest identifiers get a line (1–8).
    #[arg(long, default_value_t = 8, value_name = "N",
          value_parser = clap::value_parser!(u8).range(1..=8))]
    pub(crate) top: u8,
    /// Picture width in pixels.
    #[arg(long, default_value_t = 1200, value_name = "PX",
          value_parser = clap::value_parser!(u32).range(300..=10000))]
    pub(crate) width: u32,
    /// Picture height in pixels.
    #[arg(long, default_value_t = 1500, value_name = "PX",
          value_parser = clap::value_parser!(u32).range(300..=10000))]
    pub(crate) height: u32,
    /// Skip lines of a text capture that do not parse.
    #[arg(long)]
    pub(crate) skip_bad: bool,
}

pub(crate) fn run(a: PlotArgs) -> Result<(), Failure> {
    let format = FileFormat::from_path(&a.input).map_err(|e| Failure::usage(e.to_string()))?;
    PlotFormat::from_path(&a.output).map_err(|e| Failure::usage(e.to_string()))?;
    if !a.input.exists() {
        return Err(Failure::runtime(format!(
            "{}: no such file",
            a.input.display()
        )));
    }
    let started = Instant::now();
    let total_bytes = std::fs::metadata(&a.input).map(|m| m.len()).unwrap_or(0);
    let mut progress = Progress::new(total_bytes, format);
    let mut data = PlotData::new();
    let read = conv::read_events(
        &a.input,
        format,
        ReadOptions {
            skip_bad: a.skip_bad,
            start_ns: None,
        },
        &mut |event| {
            data.add(event);
            progress.tick();
            !stopped()
        },
    );
    progress.clear();
    let stats = read.map_err(convert_failure)?;
    // A damaged file still gets its plot of what could be read; the error follows.
    let incomplete = stats.check(&a.input).err();
    let read_s = started.elapsed().as_secs_f64();
    let title = a
        .input
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let opts = PlotOptions {
        title,
        top_ids: usize::from(a.top),
        width: a.width,
        height: a.height,
    };
    render::write_plot(&data, &opts, &a.output).map_err(|e| Failure::runtime(e.to_string()))?;
    eprintln!(
        "canmc plot: {} frames, {} IDs, {} lost, {} kernel drops from {} → {} \
         (read {:.2} s, drawn {:.2} s)",
        data.frames,
        data.id_count(),
        data.lost,
        data.kernel_drops,
        a.input.display(),
        a.output.display(),
        read_s,
        started.elapsed().as_secs_f64() - read_s
    );
    match incomplete {
        Some(e) => Err(Failure::runtime(format!(
            "{e}; the plot shows the events before it"
        ))),
        None => Ok(()),
    }
}
