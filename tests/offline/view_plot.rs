//! `plot`: what is drawn is what the capture holds. Series are read back out of the SVG
//! (plotters draws each line as a `<polyline>`, each label as `<text>`); the PNG and
//! HTML outputs are checked for what a viewer needs (size, no network reference).

use canmc::engine::Event;
use canmc::view::plot::PlotData;
use canmc::view::render::{self, PlotOptions};
use canmc::CanFrame;

const T0: u64 = 1_750_000_000_000_000_000;

/// 10 s: 0x100 at 100 frames/s (8 bytes), 0x200 at 50 frames/s (2 bytes), 0x18DAF110
/// (extended) at 10 frames/s; 7 datagrams lost at 5 s, 3 kernel drops at 7.5 s.
fn synthetic() -> Vec<Event> {
    let mut ev = Vec::new();
    for i in 0..1000u64 {
        let t = T0 + i * 10_000_000;
        let mut f = CanFrame::new(0x100, 0, &[i as u8; 8]).unwrap();
        f.timestamp_ns = t;
        ev.push(Event::Frame(f));
        if i % 2 == 0 {
            let mut f = CanFrame::new(0x200, 0, &[1, 2]).unwrap();
            f.timestamp_ns = t + 1_000_000;
            ev.push(Event::Frame(f));
        }
        if i % 10 == 0 {
            let mut f = CanFrame::new(0x18DA_F110, canmc::frame::flags::EXTENDED, &[]).unwrap();
            f.timestamp_ns = t + 2_000_000;
            ev.push(Event::Frame(f));
        }
        if i == 500 {
            ev.push(Event::Loss {
                sender: Default::default(),
                lost: 7,
                timestamp_ns: t + 3_000_000,
            });
        }
        if i == 750 {
            ev.push(Event::KernelDrops {
                count: 3,
                timestamp_ns: t + 3_000_000,
            });
        }
    }
    ev
}

/// A `<polyline>`'s stroke colour and points.
#[derive(Debug)]
struct Line {
    stroke: String,
    points: Vec<(f64, f64)>,
}

fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let k = format!(" {name}=\"");
    let i = tag.find(&k)? + k.len();
    Some(&tag[i..i + tag[i..].find('"')?])
}

fn polylines(svg: &str) -> Vec<Line> {
    svg.split("<polyline")
        .skip(1)
        .map(|t| {
            let tag = &t[..t.find("/>").unwrap()];
            let points = attr(tag, "points")
                .unwrap_or("")
                .split_whitespace()
                .map(|p| {
                    let (x, y) = p.split_once(',').unwrap();
                    (x.parse().unwrap(), y.parse().unwrap())
                })
                .collect();
            Line {
                stroke: attr(tag, "stroke").unwrap_or("").to_ascii_uppercase(),
                points,
            }
        })
        .collect()
}

fn texts(svg: &str) -> Vec<String> {
    svg.split("<text")
        .skip(1)
        .map(|t| {
            let body = &t[t.find('>').unwrap() + 1..];
            body[..body.find("</text>").unwrap()].to_string()
        })
        .collect()
}

fn hex(c: plotters::style::RGBColor) -> String {
    format!("#{:02X}{:02X}{:02X}", c.0, c.1, c.2)
}

fn data() -> PlotData {
    let mut p = PlotData::new();
    for e in synthetic() {
        p.add(&e);
    }
    p
}

#[test]
fn svg_shows_rates_ids_and_where_losses_happened() {
    let p = data();
    let svg = render::render_svg(&p, &PlotOptions::default()).unwrap();
    let lines = polylines(&svg);
    let text = texts(&svg);
    let has = |s: &str| text.iter().any(|t| t.contains(s));
    assert!(has("1600 frames in"), "title: {:?}", &text[..3]);
    assert!(has("7 lost, 3 kernel drops"));
    assert!(has("100 (1000)") && has("200 (500)") && has("18DAF110 (100)"));
    assert!(has("lost datagrams (7)") && has("kernel drops (3)"));

    // The frames/s line spans the capture.
    let frames_col = hex(render::FRAMES_COLOR);
    let frames = lines
        .iter()
        .filter(|l| l.stroke == frames_col)
        .max_by_key(|l| l.points.len())
        .unwrap();
    let n = frames.points.len();
    assert!(n > 100, "{n} points");
    let x0 = frames.points[0].0;
    let x1 = frames.points[n - 1].0;

    // The busiest IDs' lines stand in the ratio of their rates, 100 : 50 : 10 frames/s
    // (pixel heights above the panel's zero line, averaged over the capture).
    let id_line = |i: usize| {
        let col = hex(render::ID_COLORS[i]);
        lines
            .iter()
            .filter(|l| l.stroke == col)
            .max_by_key(|l| l.points.len())
            .unwrap()
    };
    let ids = [id_line(0), id_line(1), id_line(2)];
    for l in ids {
        assert_eq!(l.points.len(), n);
    }
    let zero = ids
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .fold(f64::MIN, f64::max);
    let mean_height =
        |l: &Line| l.points.iter().map(|p| zero - p.1).sum::<f64>() / l.points.len() as f64;
    let (h0, h1, h2) = (
        mean_height(ids[0]),
        mean_height(ids[1]),
        mean_height(ids[2]),
    );
    assert!((h1 / h0 - 0.5).abs() < 0.03, "{h0} {h1}");
    assert!((h2 / h0 - 0.1).abs() < 0.02, "{h0} {h2}");

    // Loss marker: a vertical line in the loss colour at 5 s of the 10 s span.
    let loss_col = hex(render::LOSS_COLOR);
    let marks: Vec<&Line> = lines
        .iter()
        .filter(|l| l.stroke == loss_col && l.points.len() == 2 && l.points[0].0 == l.points[1].0)
        .filter(|l| l.points[0].1 != l.points[1].1 && (l.points[0].1 - l.points[1].1).abs() > 50.0)
        .collect();
    assert_eq!(marks.len(), 1, "{marks:?}");
    let frac = (marks[0].points[0].0 - x0) / (x1 - x0);
    assert!(
        (frac - 0.5).abs() < 0.02,
        "loss drawn at {frac} of the span"
    );
    let kd_col = hex(render::KERNEL_DROP_COLOR);
    let kd: Vec<&Line> = lines
        .iter()
        .filter(|l| {
            l.stroke == kd_col
                && l.points.len() == 2
                && (l.points[0].1 - l.points[1].1).abs() > 50.0
        })
        .collect();
    assert_eq!(kd.len(), 1);
    let frac = (kd[0].points[0].0 - x0) / (x1 - x0);
    assert!((frac - 0.75).abs() < 0.02, "kernel drops drawn at {frac}");
}

#[test]
fn html_is_self_contained_and_png_is_an_image() {
    let p = data();
    let html = render::render_html(
        &p,
        &PlotOptions {
            title: "synthetic".into(),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("<svg") && html.contains("id=\"canmc-plot-data\""));
    for banned in ["src=", "href=\"http", "url(", "@import", "<link"] {
        assert!(
            !html.contains(banned),
            "HTML refers to something outside it: {banned}"
        );
    }
    assert!(html.contains("\"frames\":1600") && html.contains("\"lost\":7"));

    let dir = std::env::temp_dir().join(format!("canmc-view-plot-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let png = dir.join("p.png");
    let opts = PlotOptions {
        width: 800,
        height: 1000,
        ..Default::default()
    };
    render::write_plot(&p, &opts, &png).unwrap();
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    let w = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
    let h = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
    assert_eq!((w, h), (800, 1000));
    assert!(matches!(
        render::write_plot(&p, &opts, &dir.join("p.jpg")),
        Err(render::RenderError::UnknownExtension(_))
    ));
    // CANMC_KEEP_PLOT=DIR keeps a copy to look at.
    if let Some(keep) = std::env::var_os("CANMC_KEEP_PLOT") {
        std::fs::copy(&png, std::path::Path::new(&keep).join("view_plot.png")).unwrap();
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
