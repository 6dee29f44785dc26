//! `canmc info`: what a capture file holds.

use canmc::convert::{self as conv, FileFormat, ReadOptions};
use canmc::engine::Event;

use crate::cli::InfoArgs;
use crate::{convert_failure, Failure};

pub(crate) fn run(a: InfoArgs) -> Result<(), Failure> {
    let format = FileFormat::from_path(&a.file).map_err(|e| Failure::usage(e.to_string()))?;
    if !a.file.exists() {
        return Err(Failure::runtime(format!(
            "{}: no such file",
            a.file.display()
        )));
    }
    let mut frames = 0u64;
    let (mut first, mut last) = (u64::MAX, 0u64);
    let mut kinds = [0u64; 5]; // standard, extended, remote, error, fd
    let mut ids: std::collections::HashMap<(u32, bool), u64> = std::collections::HashMap::new();
    let (mut loss_events, mut lost, mut drop_events, mut drops) = (0u64, 0u64, 0u64, 0u64);
    let mut senders = std::collections::BTreeSet::new();
    let stats = conv::read_events(
        &a.file,
        format,
        ReadOptions {
            skip_bad: a.skip_bad,
            start_ns: None,
        },
        &mut |event| {
            match event {
                Event::Frame(f) => {
                    frames += 1;
                    first = first.min(f.timestamp_ns);
                    last = last.max(f.timestamp_ns);
                    kinds[usize::from(f.is_extended())] += 1;
                    if f.is_remote() {
                        kinds[2] += 1;
                    }
                    if f.is_error() {
                        kinds[3] += 1;
                    }
                    if f.is_fd() {
                        kinds[4] += 1;
                    }
                    *ids.entry((f.id, f.is_extended())).or_default() += 1;
                    if let Some(s) = f.sender.get() {
                        senders.insert(s);
                    }
                }
                Event::Loss { lost: n, .. } => {
                    loss_events += 1;
                    lost += n;
                }
                Event::KernelDrops { count, .. } => {
                    drop_events += 1;
                    drops += count;
                }
            }
            true
        },
    )
    .map_err(convert_failure)?;
    let span_ns = last.saturating_sub(first);
    let span = if frames > 0 {
        span_ns as f64 / 1e9
    } else {
        0.0
    };
    let rate = if span > 0.0 {
        frames as f64 / span
    } else {
        0.0
    };
    let mut top: Vec<_> = ids.iter().map(|(&(id, ext), &n)| (n, id, ext)).collect();
    top.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let id_text = |id: u32, ext: bool| {
        if ext {
            format!("{id:08X}")
        } else {
            format!("{id:03X}")
        }
    };
    if a.json {
        let top_json: Vec<String> = top
            .iter()
            .take(10)
            .map(|&(n, id, ext)| format!("{{\"id\":\"{}\",\"frames\":{n}}}", id_text(id, ext)))
            .collect();
        println!(
            "{{\"file\":{},\"format\":\"{}\",\"frames\":{frames},\"first_ns\":{},\"last_ns\":{},\"span_s\":{span:.6},\"rate_fps\":{rate:.1},\"standard\":{},\"extended\":{},\"remote\":{},\"error\":{},\"fd\":{},\"ids\":{},\"top_ids\":[{}],\"senders\":{},\"loss_records\":{loss_events},\"lost_datagrams\":{lost},\"kernel_drop_records\":{drop_events},\"kernel_drops\":{drops},\"skipped_lines\":{},\"end\":\"{}\"}}",
            json_string(&a.file.display().to_string()),
            format.name(),
            if frames > 0 { first } else { 0 },
            last,
            kinds[0],
            kinds[1],
            kinds[2],
            kinds[3],
            kinds[4],
            ids.len(),
            top_json.join(","),
            senders.len(),
            stats.skipped,
            end_word(stats.cmc_end)
        );
        return stats.check(&a.file).map_err(convert_failure);
    }
    println!("{} ({})", a.file.display(), format.name());
    println!(
        "  frames     {frames} ({} standard, {} extended; {} remote, {} error, {} FD)",
        kinds[0], kinds[1], kinds[2], kinds[3], kinds[4]
    );
    if frames > 0 {
        println!(
            "  time       {}.{:06} to {}.{:06} ({span:.6} s)",
            first / 1_000_000_000,
            first % 1_000_000_000 / 1000,
            last / 1_000_000_000,
            last % 1_000_000_000 / 1000
        );
        println!("  rate       {rate:.1} frames/s");
    }
    let shown: Vec<String> = top
        .iter()
        .take(8)
        .map(|&(n, id, ext)| format!("{}×{n}", id_text(id, ext)))
        .collect();
    println!(
        "  IDs        {} distinct; most frequent: {}",
        ids.len(),
        shown.join(" ")
    );
    if !senders.is_empty() {
        println!("  senders    {}", senders.len());
    }
    println!("  losses     {lost} datagrams in {loss_events} gaps; kernel drops {drops} in {drop_events} reports");
    if stats.skipped > 0 {
        println!("  skipped    {} lines that do not parse", stats.skipped);
    }
    if stats.cmc_end.is_some() {
        let why = match stats.cmc_end {
            Some(canmc::record::End::Unfinished) => {
                " (the writer did not finish: killed, or still running)"
            }
            _ => "",
        };
        println!("  end        {}{why}", end_word(stats.cmc_end));
    }
    stats.check(&a.file).map_err(convert_failure)
}

/// How a `.cmc` ended, in one word for `info` (`-` for other formats).
pub(crate) fn end_word(end: Option<canmc::record::End>) -> &'static str {
    use canmc::record::End;
    match end {
        None => "-",
        Some(End::Finished) => "finished",
        Some(End::Unfinished) => "unfinished",
        Some(End::Truncated { .. }) => "truncated",
        Some(End::Corrupt { .. }) => "corrupt",
    }
}

/// A JSON string literal (quotes and escapes) for text from the network.
pub(crate) fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
