//! Draws a [`PlotData`] with plotters: an SVG, a PNG, or one self-contained HTML file
//! (the SVG inline, a summary table and the series as inline JSON; nothing fetched
//! from a network). Four panels: frames/s with loss and kernel-drop markers, bytes/s,
//! the busiest identifiers' frames/s, and the inter-arrival histograms.
//!
//! Text is set in the Ubuntu Light font shipped by the `epaint_default_fonts` crate, so
//! rendering needs no system font.

use std::fmt::{self, Write as _};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::plot::PlotData;

/// Colour of loss markers (native sequence gaps).
pub const LOSS_COLOR: RGBColor = RGBColor(220, 0, 0);
/// Colour of kernel-drop markers.
pub const KERNEL_DROP_COLOR: RGBColor = RGBColor(255, 140, 0);
/// Colour of the frames/s line.
pub const FRAMES_COLOR: RGBColor = RGBColor(0, 0, 139);
/// Colour of the bytes/s line.
pub const BYTES_COLOR: RGBColor = RGBColor(0, 100, 0);
/// Colours of the busiest identifiers' lines, in order.
pub const ID_COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(23, 190, 207),
];

/// What `plot` writes, by the output's extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlotFormat {
    /// `.svg`
    Svg,
    /// `.png`
    Png,
    /// `.html`: the SVG inline, a summary and the data.
    Html,
}

impl PlotFormat {
    /// The format `path`'s extension names.
    pub fn from_path(path: &Path) -> Result<PlotFormat, RenderError> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(|e| e.to_ascii_lowercase());
        match ext.as_deref() {
            Some("svg") => Ok(PlotFormat::Svg),
            Some("png") => Ok(PlotFormat::Png),
            Some("html") | Some("htm") => Ok(PlotFormat::Html),
            _ => Err(RenderError::UnknownExtension(path.to_path_buf())),
        }
    }
}

/// How to draw.
#[derive(Debug, Clone)]
pub struct PlotOptions {
    /// The heading (usually the capture's file name).
    pub title: String,
    /// How many of the busiest identifiers get a line (at most [`ID_COLORS`]'s length).
    pub top_ids: usize,
    /// Picture size in pixels.
    pub width: u32,
    /// Picture size in pixels.
    pub height: u32,
}

impl Default for PlotOptions {
    fn default() -> Self {
        PlotOptions {
            title: String::new(),
            top_ids: 8,
            width: 1200,
            height: 1500,
        }
    }
}

/// Why a plot could not be written.
#[derive(Debug)]
pub enum RenderError {
    /// The output's extension is not .svg, .png or .html.
    UnknownExtension(PathBuf),
    /// plotters failed to draw (its message).
    Draw(String),
    /// Writing the output failed.
    Io {
        /// The output.
        path: PathBuf,
        /// What went wrong.
        source: io::Error,
    },
}

impl fmt::Display for RenderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RenderError::UnknownExtension(p) => {
                write!(
                    f,
                    "{}: unknown extension (use .html, .svg or .png)",
                    p.display()
                )
            }
            RenderError::Draw(m) => write!(f, "cannot draw the plot: {m}"),
            RenderError::Io { path, source } => write!(f, "{}: {source}", path.display()),
        }
    }
}

impl std::error::Error for RenderError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RenderError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

fn draw_err<E: std::error::Error + Send + Sync>(e: DrawingAreaErrorKind<E>) -> RenderError {
    RenderError::Draw(e.to_string())
}

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The bytes are a valid TrueType font shipped in the crate; a failure would
        // only make text fall back to nothing, not break drawing.
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            epaint_default_fonts::UBUNTU_LIGHT,
        );
    });
}

/// Draws the plot as an SVG document.
pub fn render_svg(data: &PlotData, opts: &PlotOptions) -> Result<String, RenderError> {
    register_font();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (opts.width, opts.height)).into_drawing_area();
        draw(&root, data, opts).map_err(draw_err)?;
        root.present().map_err(draw_err)?;
    }
    Ok(svg)
}

/// Draws the plot into a PNG file at `path`.
pub fn render_png(data: &PlotData, opts: &PlotOptions, path: &Path) -> Result<(), RenderError> {
    register_font();
    let root = BitMapBackend::new(path, (opts.width, opts.height)).into_drawing_area();
    draw(&root, data, opts).map_err(draw_err)?;
    root.present().map_err(|e| match e {
        // The bitmap backend reports a failed write as text only.
        DrawingAreaErrorKind::BackendError(e) => RenderError::Io {
            path: path.to_path_buf(),
            source: io::Error::other(e.to_string()),
        },
        e => RenderError::Draw(e.to_string()),
    })
}

/// The plot as one HTML page: the SVG inline, a summary table, and the series in a
/// `<script type="application/json" id="canmc-plot-data">` block.
pub fn render_html(data: &PlotData, opts: &PlotOptions) -> Result<String, RenderError> {
    let svg = render_svg(data, opts)?;
    let mut h = String::with_capacity(svg.len() + 64 * 1024);
    let title = html_escape(&opts.title);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>canmc plot: {title}</title>\n\
         <style>body{{font-family:sans-serif;margin:1em}}table{{border-collapse:collapse}}\
         td,th{{padding:2px 8px;border-bottom:1px solid #ddd;text-align:right}}</style>\n\
         </head><body>\n<h1>{title}</h1>\n<table>\n"
    );
    let rows: [(&str, String); 8] = [
        ("frames", data.frames.to_string()),
        ("payload bytes", data.bytes.to_string()),
        ("span", format!("{:.3} s", data.span_ns() as f64 / 1e9)),
        ("identifiers", data.id_count().to_string()),
        (
            "lost datagrams",
            format!("{} in {} events", data.lost, data.loss_events),
        ),
        (
            "kernel drops",
            format!(
                "{} in {} events",
                data.kernel_drops, data.kernel_drop_events
            ),
        ),
        ("bucket", format!("{} ms", data.bucket_ns() as f64 / 1e6)),
        (
            "mean rate",
            format!(
                "{:.1} frames/s",
                data.frames as f64 * 1e9 / data.span_ns().max(1) as f64
            ),
        ),
    ];
    for (k, v) in rows {
        let _ = writeln!(h, "<tr><th>{k}</th><td>{v}</td></tr>");
    }
    h.push_str("</table>\n<div>");
    h.push_str(&svg);
    h.push_str(
        "</div>\n<h2>Busiest identifiers</h2>\n<table><tr><th>ID</th><th>frames</th></tr>\n",
    );
    for (k, n) in data.id_totals().into_iter().take(32) {
        let _ = writeln!(h, "<tr><td>{}</td><td>{n}</td></tr>", k.label());
    }
    h.push_str("</table>\n<script type=\"application/json\" id=\"canmc-plot-data\">");
    write_json(&mut h, data, opts);
    h.push_str("</script>\n</body></html>\n");
    Ok(h)
}

/// Draws to `path` in the format its extension names.
pub fn write_plot(data: &PlotData, opts: &PlotOptions, path: &Path) -> Result<(), RenderError> {
    let io_err = |source| RenderError::Io {
        path: path.to_path_buf(),
        source,
    };
    match PlotFormat::from_path(path)? {
        PlotFormat::Png => render_png(data, opts, path),
        PlotFormat::Svg => std::fs::write(path, render_svg(data, opts)?).map_err(io_err),
        PlotFormat::Html => std::fs::write(path, render_html(data, opts)?).map_err(io_err),
    }
}

fn html_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '&' => o.push_str("&amp;"),
            '"' => o.push_str("&quot;"),
            c => o.push(c),
        }
    }
    o
}

/// The series as JSON (numbers and hex labels only, so nothing needs escaping; `<`
/// cannot appear, which keeps the `<script>` block closed where it should be).
fn write_json(h: &mut String, data: &PlotData, opts: &PlotOptions) {
    let b = data.buckets();
    let _ = write!(
        h,
        "{{\"start_ns\":{},\"bucket_ns\":{},\"frames\":{},\"lost\":{},\"kernel_drops\":{},",
        data.start_ns().unwrap_or(0),
        data.bucket_ns(),
        data.frames,
        data.lost,
        data.kernel_drops
    );
    let list = |h: &mut String, name: &str, f: &dyn Fn(usize) -> u64| {
        let _ = write!(h, "\"{name}\":[");
        for i in 0..b.len() {
            if i > 0 {
                h.push(',');
            }
            let _ = write!(h, "{}", f(i));
        }
        h.push_str("],");
    };
    list(h, "frames_per_bucket", &|i| b[i].frames);
    list(h, "bytes_per_bucket", &|i| b[i].bytes);
    list(h, "lost_per_bucket", &|i| b[i].lost);
    list(h, "kernel_drops_per_bucket", &|i| b[i].kernel_drops);
    h.push_str("\"busiest\":[");
    for (n, (k, total, s)) in data.busiest(opts.top_ids).into_iter().enumerate() {
        if n > 0 {
            h.push(',');
        }
        let _ = write!(
            h,
            "{{\"id\":\"{}\",\"frames\":{total},\"per_bucket\":[",
            k.label()
        );
        for (i, c) in s.iter().enumerate() {
            if i > 0 {
                h.push(',');
            }
            let _ = write!(h, "{c}");
        }
        h.push_str("]}");
    }
    h.push_str("],\"inter_arrival\":{\"bins\":[");
    for (i, ((lo, hi, bus), (_, _, id))) in
        data.bus_gaps.bins().zip(data.id_periods.bins()).enumerate()
    {
        if i > 0 {
            h.push(',');
        }
        let _ = write!(h, "[{lo:.0},{hi:.0},{bus},{id}]");
    }
    h.push_str("]}}");
}

type DrawResult<DB> = Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    data: &PlotData,
    opts: &PlotOptions,
) -> DrawResult<DB> {
    root.fill(&WHITE)?;
    let title = format!(
        "{}{} frames in {:.3} s, {} IDs, {} lost, {} kernel drops",
        if opts.title.is_empty() {
            String::new()
        } else {
            format!("{}  —  ", opts.title)
        },
        data.frames,
        data.span_ns() as f64 / 1e9,
        data.id_count(),
        data.lost,
        data.kernel_drops
    );
    let root = root.titled(&title, ("sans-serif", 22))?;
    let panels = root.split_evenly((4, 1));
    let b = data.buckets();
    let xmax = (data.bucket_start_s(b.len())).max(1e-3);

    // About one point per 4 pixels: finer lines only alias against periodic traffic.
    let group = data.group_for(opts.width as usize / 4);
    let frames = data.rate_line(group, |i| b[i].frames);
    draw_rate_panel(
        &panels[0],
        "frames/s",
        &frames,
        FRAMES_COLOR,
        xmax,
        Some(data),
    )?;
    let bytes = data.rate_line(group, |i| b[i].bytes);
    draw_rate_panel(
        &panels[1],
        "payload bytes/s",
        &bytes,
        BYTES_COLOR,
        xmax,
        None,
    )?;
    draw_ids_panel(&panels[2], data, opts, group, xmax)?;
    draw_histogram_panel(&panels[3], data)
}

fn draw_rate_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    name: &str,
    series: &[(f64, f64)],
    color: RGBColor,
    xmax: f64,
    losses: Option<&PlotData>,
) -> DrawResult<DB> {
    let ymax = series.iter().map(|p| p.1).fold(0.0, f64::max).max(1.0) * 1.1;
    let mut chart = ChartBuilder::on(area)
        .caption(name, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..xmax, 0f64..ymax)?;
    chart
        .configure_mesh()
        .x_desc("seconds from the first event")
        .y_desc(name)
        .y_label_formatter(&|v| si(*v))
        .draw()?;
    chart
        .draw_series(LineSeries::new(
            series.iter().copied(),
            color.stroke_width(1),
        ))?
        .label(name)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    if let Some(data) = losses {
        let b = data.buckets();
        let marks = |pick: fn(&super::plot::Bucket) -> u64| -> Vec<f64> {
            (0..b.len())
                .filter(|&i| pick(&b[i]) > 0)
                .map(|i| data.bucket_start_s(i))
                .collect()
        };
        for (xs, colour, label) in [
            (
                marks(|b| b.lost),
                LOSS_COLOR,
                format!("lost datagrams ({})", data.lost),
            ),
            (
                marks(|b| b.kernel_drops),
                KERNEL_DROP_COLOR,
                format!("kernel drops ({})", data.kernel_drops),
            ),
        ] {
            if xs.is_empty() {
                continue;
            }
            chart
                .draw_series(xs.into_iter().map(move |x| {
                    PathElement::new(vec![(x, 0.0), (x, ymax)], colour.stroke_width(2))
                }))?
                .label(label)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
                });
        }
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
}

fn draw_ids_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    data: &PlotData,
    opts: &PlotOptions,
    group: usize,
    xmax: f64,
) -> DrawResult<DB> {
    let top = data.busiest(opts.top_ids.min(ID_COLORS.len()));
    let lines: Vec<(String, Vec<(f64, f64)>)> = top
        .iter()
        .map(|(k, total, s)| {
            let pts = data.rate_line(group, |i| u64::from(s[i]));
            (format!("{} ({total})", k.label()), pts)
        })
        .collect();
    let ymax = lines
        .iter()
        .flat_map(|(_, p)| p.iter().map(|p| p.1))
        .fold(0.0, f64::max)
        .max(1.0)
        * 1.1;
    let mut chart = ChartBuilder::on(area)
        .caption("busiest identifiers, frames/s", ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..xmax, 0f64..ymax)?;
    chart
        .configure_mesh()
        .x_desc("seconds from the first event")
        .y_desc("frames/s")
        .y_label_formatter(&|v| si(*v))
        .draw()?;
    for (n, (label, pts)) in lines.into_iter().enumerate() {
        let c = ID_COLORS[n % ID_COLORS.len()];
        chart
            .draw_series(LineSeries::new(pts, c.stroke_width(1)))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
}

fn draw_histogram_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    data: &PlotData,
) -> DrawResult<DB> {
    // Only the decades that hold values, so a 10 ms cycle does not sit in a corner.
    let used: Vec<(f64, f64, u64, u64)> = data
        .bus_gaps
        .bins()
        .zip(data.id_periods.bins())
        .map(|((lo, hi, a), (_, _, b))| (lo, hi, a, b))
        .collect();
    let first = used.iter().position(|b| b.2 + b.3 > 0).unwrap_or(0);
    let last = used
        .iter()
        .rposition(|b| b.2 + b.3 > 0)
        .unwrap_or(used.len() - 1);
    let xlo = used[first].0 / 1e9;
    let xhi = used[last].1 / 1e9;
    let ymax = used.iter().map(|b| b.2.max(b.3)).max().unwrap_or(0).max(1) as f64 * 1.1;
    let mut chart = ChartBuilder::on(area)
        .caption(
            "inter-arrival time: between frames on the bus, and between frames of one ID",
            ("sans-serif", 18),
        )
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(70)
        .build_cartesian_2d((xlo..xhi).log_scale(), 0f64..ymax)?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc("count")
        .x_label_formatter(&|v| duration(*v))
        .y_label_formatter(&|v| si(*v))
        .draw()?;
    let bus = FRAMES_COLOR;
    let id = RGBColor(255, 127, 14);
    for (n, (colour, label)) in [(bus, "bus (consecutive frames)"), (id, "per ID")]
        .into_iter()
        .enumerate()
    {
        let bars = used[first..=last].iter().map(move |b| {
            let count = if n == 0 { b.2 } else { b.3 };
            Rectangle::new(
                [(b.0 / 1e9, 0.0), (b.1 / 1e9, count as f64)],
                colour.mix(0.45).filled(),
            )
        });
        chart
            .draw_series(bars)?
            .label(label)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 15, y + 5)], colour.filled()));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
}

/// 1234567 → "1.23M".
fn si(v: f64) -> String {
    let a = v.abs();
    if a >= 1e9 {
        format!("{:.3}G", v / 1e9)
    } else if a >= 1e6 {
        format!("{:.3}M", v / 1e6)
    } else if a >= 1e3 {
        format!("{:.3}k", v / 1e3)
    } else {
        format!("{v:.1}")
    }
}

/// Seconds as "10ms", "1.5µs".
fn duration(s: f64) -> String {
    if s >= 1.0 {
        format!("{s:.3}s")
    } else if s >= 1e-3 {
        format!("{:.3}ms", s * 1e3)
    } else if s >= 1e-6 {
        format!("{:.3}µs", s * 1e6)
    } else {
        format!("{:.0}ns", s * 1e9)
    }
}
