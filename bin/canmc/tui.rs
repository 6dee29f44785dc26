//! The terminal side of `canmc top`: the screen (ratatui on crossterm, drawn on stderr
//! so stdout stays free for `--json`), the keys, and how a table copy is drawn.

use std::io::{self, BufWriter, Stderr};
use std::time::Duration;

use canmc::engine::Stats;
use canmc::view::dbc::Dbc;
use canmc::view::table::{Row as IdRow, RowFilter, SortKey};
use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::crossterm::{cursor, execute, terminal};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table};
use ratatui::Terminal;

use crate::cmd::top::Shared;

/// What is being shown.
pub(crate) enum Source {
    /// The group, `addr:port`.
    Group(String),
    /// A file.
    File(String),
}

/// What a key asked for beyond the view itself.
pub(crate) enum Action {
    None,
    Quit,
    Clear,
}

/// The user's choices: sort, filter, pause, scroll.
pub(crate) struct View {
    pub(crate) sort: SortKey,
    pub(crate) paused: bool,
    filter: RowFilter,
    filter_text: String,
    /// `Some` while a filter is being typed.
    editing: Option<String>,
    filter_error: Option<String>,
    scroll: usize,
    bitrate: u64,
    /// Bytes changed within this long (data time) are highlighted.
    highlight_ns: u64,
    dbc: Option<Dbc>,
    order: Vec<usize>,
}

impl View {
    pub(crate) fn new(sort: SortKey, bitrate: u64, highlight_ns: u64, dbc: Option<Dbc>) -> View {
        View {
            sort,
            paused: false,
            filter: RowFilter::default(),
            filter_text: String::new(),
            editing: None,
            filter_error: None,
            scroll: 0,
            bitrate,
            highlight_ns,
            dbc,
            order: Vec::new(),
        }
    }
}

/// The terminal in raw mode on the alternate screen; restored when dropped.
pub(crate) struct Screen {
    /// Buffered, so that each frame reaches the terminal in one write, not cell by cell.
    term: Terminal<CrosstermBackend<BufWriter<Stderr>>>,
}

impl Screen {
    pub(crate) fn open() -> io::Result<Screen> {
        terminal::enable_raw_mode()?;
        let mut err = io::stderr();
        if let Err(e) = execute!(err, terminal::EnterAlternateScreen, cursor::Hide) {
            let _ = terminal::disable_raw_mode();
            return Err(e);
        }
        match Terminal::new(CrosstermBackend::new(BufWriter::with_capacity(
            1 << 16,
            err,
        ))) {
            Ok(term) => Ok(Screen { term }),
            Err(e) => {
                let _ = execute!(io::stderr(), terminal::LeaveAlternateScreen, cursor::Show);
                let _ = terminal::disable_raw_mode();
                Err(e)
            }
        }
    }

    /// Waits up to `timeout` for keys and applies them.
    pub(crate) fn keys(&mut self, v: &mut View, timeout: Duration) -> io::Result<Action> {
        if !event::poll(timeout)? {
            return Ok(Action::None);
        }
        while event::poll(Duration::ZERO)? {
            let Event::Key(k) = event::read()? else {
                continue;
            };
            if k.kind != KeyEventKind::Press {
                continue;
            }
            if k.modifiers.contains(KeyModifiers::CONTROL) && k.code == KeyCode::Char('c') {
                return Ok(Action::Quit);
            }
            if let Some(text) = v.editing.as_mut() {
                match k.code {
                    KeyCode::Enter => {
                        let text = v.editing.take().unwrap_or_default();
                        match text.parse::<RowFilter>() {
                            Ok(f) => {
                                v.filter = f;
                                v.filter_text = text;
                                v.filter_error = None;
                                v.scroll = 0;
                            }
                            Err(e) => v.filter_error = Some(e),
                        }
                    }
                    KeyCode::Esc => v.editing = None,
                    KeyCode::Backspace => {
                        text.pop();
                    }
                    KeyCode::Char(c) if text.len() < 40 => text.push(c),
                    _ => {}
                }
                continue;
            }
            match k.code {
                KeyCode::Char('q') | KeyCode::Esc => return Ok(Action::Quit),
                KeyCode::Char('s') => v.sort = v.sort.next(),
                KeyCode::Char('i') => v.sort = SortKey::Id,
                KeyCode::Char('r') => v.sort = SortKey::Rate,
                KeyCode::Char('n') => v.sort = SortKey::Count,
                KeyCode::Char('p') | KeyCode::Char(' ') => v.paused = !v.paused,
                KeyCode::Char('c') => return Ok(Action::Clear),
                KeyCode::Char('/') | KeyCode::Char('f') => {
                    v.editing = Some(v.filter_text.clone());
                }
                KeyCode::Down => v.scroll = v.scroll.saturating_add(1),
                KeyCode::Up => v.scroll = v.scroll.saturating_sub(1),
                KeyCode::PageDown => v.scroll = v.scroll.saturating_add(20),
                KeyCode::PageUp => v.scroll = v.scroll.saturating_sub(20),
                KeyCode::Home => v.scroll = 0,
                _ => {}
            }
        }
        Ok(Action::None)
    }

    pub(crate) fn draw(
        &mut self,
        v: &mut View,
        source: &Source,
        snap: &Shared,
        stats: Option<&Stats>,
    ) -> io::Result<()> {
        let table = &snap.table;
        let filter = v.filter.clone();
        table.order(v.sort, |r| filter.keeps(r), &mut v.order);
        let t = table.totals();
        let (what, name) = match source {
            Source::Group(g) => ("group", g.as_str()),
            Source::File(f) => ("file", f.as_str()),
        };
        let mut head = format!(
            "canmc top  {what} {name}  sort {}  filter {}",
            v.sort.name(),
            if v.filter.is_all() {
                "-"
            } else {
                &v.filter_text
            }
        );
        if v.paused {
            head.push_str("  [PAUSED]");
        }
        if snap.finished {
            head.push_str("  [END OF FILE]");
        }
        let losses = match stats {
            Some(s) => format!(
                "kernel drops {}  ring drops {}  seq gaps {}  decode errors {}",
                s.kernel_drops,
                s.ring_drops,
                s.seq_gaps,
                s.decode_errors_total()
            ),
            None => format!(
                "kernel drops {}  ring drops -  seq gaps {}",
                t.kernel_drops, t.seq_gaps
            ),
        };
        let totals = format!(
            "frames {}  {:.0} frames/s  {:.0} B/s  load {:.1}% of {} kbit/s  IDs {}  {losses}",
            t.frames,
            t.frames_per_s,
            t.bytes_per_s,
            table.max_load(v.bitrate) * 100.0,
            v.bitrate / 1000,
            table.rows().len(),
        );
        let foot = match (&v.editing, &v.filter_error, &snap.error) {
            (Some(text), _, _) => format!("filter (hex id, lo-hi, id:mask, id~mask): {text}_"),
            (None, Some(e), _) => format!("bad filter: {e}"),
            (None, None, Some(e)) => format!("error: {e}"),
            _ => "q quit  s/i/r/n sort  p pause  c clear  / filter  ↑↓ scroll".to_string(),
        };
        let since = snap.now_ns.saturating_sub(v.highlight_ns);
        let rows_shown: Vec<Row> = v
            .order
            .iter()
            .skip(v.scroll.min(v.order.len().saturating_sub(1)))
            .map(|&i| row(&table.rows()[i], since, v.dbc.as_ref()))
            .collect();
        let mut widths = vec![
            Constraint::Length(8),
            Constraint::Length(9),
            Constraint::Length(10),
            Constraint::Length(9),
            Constraint::Length(10),
            Constraint::Length(10),
            Constraint::Length(3),
            Constraint::Min(24),
        ];
        let mut header = vec![
            "CHAN",
            "ID",
            "COUNT",
            "RATE/s",
            "PERIOD ms",
            "JITTER ms",
            "DLC",
            "DATA",
        ];
        if v.dbc.is_some() {
            widths[7] = Constraint::Length(24);
            widths.push(Constraint::Min(20));
            header.push("SIGNALS");
        }
        let head_row = Row::new(header).style(Style::default().add_modifier(Modifier::BOLD));
        self.term.draw(|f| {
            let [h, tl, body, ft] = Layout::vertical([
                Constraint::Length(1),
                Constraint::Length(1),
                Constraint::Min(1),
                Constraint::Length(1),
            ])
            .areas(f.area());
            f.render_widget(Paragraph::new(head), h);
            f.render_widget(Paragraph::new(totals), tl);
            f.render_widget(Table::new(rows_shown, widths).header(head_row), body);
            f.render_widget(
                Paragraph::new(foot).style(Style::default().add_modifier(Modifier::DIM)),
                ft,
            );
        })?;
        Ok(())
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        let _ = execute!(io::stderr(), terminal::LeaveAlternateScreen, cursor::Show);
        let _ = terminal::disable_raw_mode();
    }
}

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |s| format!("{:.3}", s * 1e3))
}

/// One table row; bytes changed since `since` (data time) are highlighted.
fn row<'a>(r: &IdRow, since: u64, dbc: Option<&Dbc>) -> Row<'a> {
    let id = match (r.is_error(), r.is_extended()) {
        (true, _) => format!("ERR{:X}", r.id),
        (false, true) => format!("{:08X}", r.id),
        (false, false) => format!("{:03X}", r.id),
    };
    let changed = r.changed_since(since);
    let hot = Style::default()
        .fg(Color::Black)
        .bg(Color::Yellow)
        .add_modifier(Modifier::BOLD);
    let mut bytes = Vec::with_capacity(usize::from(r.len) * 2);
    for (i, b) in r.payload().iter().enumerate() {
        let style = if changed & (1 << i) != 0 {
            hot
        } else {
            Style::default()
        };
        bytes.push(Span::styled(format!("{b:02X}"), style));
        bytes.push(Span::raw(" "));
    }
    let mut cells = vec![
        Cell::from(if r.channel.is_none() {
            "-".to_string()
        } else {
            r.channel.to_string()
        }),
        Cell::from(id),
        Cell::from(r.count.to_string()),
        Cell::from(format!("{:.1}", r.rate)),
        Cell::from(ms(r.mean_period())),
        Cell::from(ms(r.jitter())),
        Cell::from(r.dlc.to_string()),
        Cell::from(Line::from(bytes)),
    ];
    if let Some(dbc) = dbc {
        let mut text = String::new();
        let mut frame = canmc::CanFrame::EMPTY;
        frame.id = r.id;
        frame.flags = r.flags & !canmc::frame::flags::RTR;
        frame.len = r.len;
        frame.data = r.data;
        if let Some(m) = dbc.decode(&frame, &mut |s| {
            text.push(' ');
            text.push_str(&s.to_string());
        }) {
            text.insert_str(0, &m.name);
        }
        cells.push(Cell::from(text));
    }
    Row::new(cells)
}
