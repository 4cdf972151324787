//! Drawing `famfs-trace top`: the header (daemon, link state, probe summary, sort/filter/pause), the
//! per-opcode request table, the DAX fault line and the per-file table (or one file's detail, `detail`),
//! plus the help popup. Also the
//! plain-text frame of `--once` (a frame drawn into a buffer, printed line by line).
//!
//! Pure: reads an [`App`] and draws into a ratatui [`Frame`], whatever the backend. No I/O, no locks,
//! no sorting or filtering (the app did that); only the visible rows are formatted, so the cost of a
//! frame does not grow with the number of files.

use ratatui::{
    Frame,
    buffer::Buffer,
    layout::{Alignment, Constraint, Layout, Rect},
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::{Block, Cell, Clear, Paragraph, Row, Table},
};

use super::app::{App, Link, Mode};
use crate::util::fmt::{fmt_age, fmt_bytes, fmt_count, fmt_opt_secs, fmt_pct, fmt_rate};

/// Where each panel goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Areas {
    pub header: Rect,
    pub opcodes: Rect,
    pub faults: Rect,
    pub files: Rect,
}

const HEADER_H: u16 = 2;
const FAULTS_H: u16 = 3;
/// Borders (2) and the column header (1) of a table panel.
const TABLE_CHROME: u16 = 3;

/// Height of a table panel with `n` rows (an empty one shows a one-line message without a header).
fn table_h(n: usize) -> u16 {
    if n == 0 {
        3
    } else {
        u16::try_from(n)
            .unwrap_or(u16::MAX)
            .saturating_add(TABLE_CHROME)
    }
}

/// Split `area`: the opcode table gets all its rows when everything fits, else at most a third.
pub fn layout(app: &App, area: Rect) -> Areas {
    let want_op = table_h(app.rates.opcodes.len());
    let want_files = table_h(app.order.len());
    let avail = area.height.saturating_sub(HEADER_H + FAULTS_H);
    let op = if want_op.saturating_add(want_files) <= avail {
        want_op
    } else {
        want_op.min((avail / 3).max(TABLE_CHROME + 2))
    };
    let [header, opcodes, faults, files] = Layout::vertical([
        Constraint::Length(HEADER_H),
        Constraint::Length(op),
        Constraint::Length(FAULTS_H),
        Constraint::Min(0),
    ])
    .areas(area);
    Areas {
        header,
        opcodes,
        faults,
        files,
    }
}

/// File rows visible in `area` (for page up/down).
pub fn file_rows_visible(app: &App, area: Rect) -> usize {
    usize::from(layout(app, area).files.height.saturating_sub(TABLE_CHROME))
}

/// Height of a frame that shows every opcode and file row (for `--once`).
pub fn full_height(app: &App) -> u16 {
    (HEADER_H + FAULTS_H)
        .saturating_add(table_h(app.rates.opcodes.len()))
        .saturating_add(table_h(app.order.len()))
}

/// Draw the whole view.
pub fn render(f: &mut Frame, app: &App) {
    let area = f.area();
    let a = layout(app, area);
    render_header(f, app, a.header);
    render_opcodes(f, app, a.opcodes);
    render_faults(f, app, a.faults);
    match &app.mode {
        Mode::Detail(path) => detail::render_detail(f, app, path, a.files),
        _ => render_files(f, app, a.files),
    }
    if app.help {
        render_help(f, area);
    }
}

fn dim() -> Style {
    Style::default().add_modifier(Modifier::DIM)
}

fn bold() -> Style {
    Style::default().add_modifier(Modifier::BOLD)
}

fn render_header(f: &mut Frame, app: &App, area: Rect) {
    let mut l1 = vec![
        Span::styled(" famfs-trace top ", bold().add_modifier(Modifier::REVERSED)),
        Span::raw("  daemon "),
        Span::styled(app.addr.as_str(), bold()),
        Span::raw("  "),
    ];
    match &app.link {
        Link::Connecting => l1.push(Span::raw("connecting...")),
        Link::Up => l1.push(Span::raw(format!(
            "updated {} ago",
            fmt_age(app.age.map(|d| d.as_secs_f64()))
        ))),
        Link::Down(reason) => l1.push(Span::styled(
            format!(
                "daemon unreachable: {reason} (retrying every {})",
                fmt_age(Some(app.interval.as_secs_f64()))
            ),
            bold().fg(Color::Red),
        )),
    }
    if app.has_data {
        let (att, unav) = app.snapshot.probe_counts();
        l1.push(Span::raw("  "));
        l1.push(if att + unav == 0 {
            Span::raw("probes: none loaded")
        } else {
            Span::raw(format!("probes {att} attached / {unav} unavailable"))
        });
    }
    let mut l2 = vec![Span::raw(format!(" sort: {}  ", app.sort.as_str()))];
    match &app.mode {
        Mode::Filter(draft) => {
            l2.push(Span::styled(
                format!("filter: {draft}_"),
                Style::default().fg(Color::Yellow),
            ));
            l2.push(Span::styled("  (Enter apply, Esc cancel)", dim()));
        }
        Mode::Normal | Mode::Detail(_) => {
            if app.filter.is_empty() {
                l2.push(Span::raw("filter: none"));
            } else {
                l2.push(Span::raw(format!("filter: {}", app.filter)));
            }
            if app.paused {
                l2.push(Span::raw("  "));
                l2.push(Span::styled(
                    "PAUSED",
                    bold().add_modifier(Modifier::REVERSED),
                ));
            }
            l2.push(Span::styled(
                if matches!(app.mode, Mode::Detail(_)) {
                    "   Esc back  q quit  p pause  ? help"
                } else {
                    "   q quit  s sort  / filter  p pause  j/k move  Enter detail  ? help"
                },
                dim(),
            ));
        }
    }
    f.render_widget(Paragraph::new(vec![Line::from(l1), Line::from(l2)]), area);
}

fn right(s: String) -> Cell<'static> {
    Cell::from(Line::from(s).alignment(Alignment::Right))
}

fn header_row(cols: &[(&'static str, bool)]) -> Row<'static> {
    Row::new(cols.iter().map(|(t, r)| {
        let l = Line::from(*t);
        Cell::from(if *r { l.alignment(Alignment::Right) } else { l })
    }))
    .style(bold().add_modifier(Modifier::UNDERLINED))
}

fn render_opcodes(f: &mut Frame, app: &App, area: Rect) {
    let block = Block::bordered().title(" FUSE requests (kernel, per opcode) ");
    if app.rates.opcodes.is_empty() {
        f.render_widget(
            Paragraph::new(Line::styled(
                " no FUSE requests seen (no probes, or no FUSE traffic yet)",
                dim(),
            ))
            .block(block),
            area,
        );
        return;
    }
    let visible = usize::from(area.height.saturating_sub(TABLE_CHROME));
    let rows = app.rates.opcodes.iter().take(visible).map(|o| {
        Row::new([
            Cell::from(o.opcode.as_str()),
            right(o.connection.to_string()),
            right(fmt_rate(o.per_sec)),
            right(fmt_count(o.total)),
            right(fmt_count(o.errors)),
            right(fmt_opt_secs(o.p50)),
            right(fmt_opt_secs(o.p99)),
        ])
    });
    let widths = [
        Constraint::Min(12),
        Constraint::Length(6),
        Constraint::Length(9),
        Constraint::Length(10),
        Constraint::Length(8),
        Constraint::Length(9),
        Constraint::Length(9),
    ];
    let t = Table::new(rows, widths)
        .header(header_row(&[
            ("OPCODE", false),
            ("CONN", true),
            ("REQ/S", true),
            ("TOTAL", true),
            ("ERRORS", true),
            ("P50", true),
            ("P99", true),
        ]))
        .block(block);
    f.render_widget(t, area);
}

fn render_faults(f: &mut Frame, app: &App, area: Rect) {
    let r = &app.rates;
    let t = &app.snapshot.faults;
    let warn = r.fallback_ratio.is_some_and(|x| x > 0.0);
    let line = Line::from(vec![
        Span::raw(format!(" PTE (4K) {}/s", fmt_rate(r.pte_per_sec))),
        Span::raw(format!("   PMD (2M) {}/s", fmt_rate(r.pmd_per_sec))),
        Span::raw("   PMD->PTE fallback "),
        Span::styled(
            fmt_pct(r.fallback_ratio),
            if warn {
                bold().fg(Color::Red)
            } else {
                Style::default()
            },
        ),
        Span::styled(
            format!(
                "   totals: pte {} pmd {} fallback {} errors {}",
                fmt_count(t.pte.total()),
                fmt_count(t.pmd.total()),
                fmt_count(t.pmd.fallback + t.pte.fallback),
                fmt_count(t.pmd.error + t.pte.error)
            ),
            dim(),
        ),
    ]);
    f.render_widget(
        Paragraph::new(line).block(Block::bordered().title(" DAX faults ")),
        area,
    );
}

fn render_files(f: &mut Frame, app: &App, area: Rect) {
    // With a filter the daemon answers only the matching files, so the snapshot holds no total to
    // show "N of M" against (it would read "2 of 5" until the next poll, then "2 of 2").
    let title = if app.filter.is_empty() {
        format!(" Files: {} ", app.order.len())
    } else {
        format!(" Files: {} matching {:?} ", app.order.len(), app.filter)
    };
    let block = Block::bordered().title(title);
    if app.order.is_empty() {
        let msg = if app.snapshot.files.is_empty() {
            " no files (the daemon serves no famfs mount, or none was accessed yet)"
        } else {
            " no file matches the filter"
        };
        f.render_widget(Paragraph::new(Line::styled(msg, dim())).block(block), area);
        return;
    }
    let visible = usize::from(area.height.saturating_sub(TABLE_CHROME)).max(1);
    let offset = (app.selected + 1).saturating_sub(visible);
    let rows = app
        .order
        .iter()
        .enumerate()
        .skip(offset)
        .take(visible)
        .filter_map(|(pos, &i)| {
            let file = app.snapshot.files.get(i)?;
            let row = Row::new([
                Cell::from(file.path.as_str()),
                right(fmt_count(file.opens)),
                right(fmt_opt_secs(app.open_p99.get(i).copied().flatten())),
                right(fmt_bytes(file.fmap_bytes)),
                right(fmt_count(file.get_fmap_retries)),
                right(fmt_count(file.faults_pte)),
                right(fmt_count(file.faults_pmd)),
                right(fmt_age(file.last_access_age_seconds)),
            ]);
            Some(if pos == app.selected {
                row.style(Style::default().add_modifier(Modifier::REVERSED))
            } else {
                row
            })
        });
    let widths = [
        Constraint::Min(16),
        Constraint::Length(8),
        Constraint::Length(9),
        Constraint::Length(8),
        Constraint::Length(7),
        Constraint::Length(8),
        Constraint::Length(8),
        Constraint::Length(8),
    ];
    let t = Table::new(rows, widths)
        .header(header_row(&[
            ("PATH", false),
            ("OPENS", true),
            ("OPEN P99", true),
            ("FMAP B", true),
            ("RETRY", true),
            ("PTE", true),
            ("PMD", true),
            ("LAST", true),
        ]))
        .block(block);
    f.render_widget(t, area);
}

fn render_help(f: &mut Frame, area: Rect) {
    const KEYS: [&str; 9] = [
        " q, Esc      quit",
        " s           next sort key",
        " /           edit the path filter",
        "             (Enter apply, Esc cancel)",
        " p, Space    pause / resume",
        " j/k, arrows move the selection",
        " PgUp/PgDn   page; g/G first/last",
        " Enter       the file's processes (Esc back)",
        " ?           this help (again: close)",
    ];
    let w = 48.min(area.width);
    let h = (KEYS.len() as u16 + 2).min(area.height);
    let popup = Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    };
    f.render_widget(Clear, popup);
    f.render_widget(
        Paragraph::new(KEYS.iter().map(|k| Line::raw(*k)).collect::<Vec<_>>())
            .block(Block::bordered().title(" keys ")),
        popup,
    );
}

/// The text of a buffer, one string per row, trailing blanks removed (styles are dropped).
pub fn buffer_lines(buf: &Buffer) -> Vec<String> {
    let area = buf.area;
    (area.y..area.y + area.height)
        .map(|y| {
            let mut s = String::with_capacity(usize::from(area.width));
            for x in area.x..area.x + area.width {
                s.push_str(buf[(x, y)].symbol());
            }
            s.truncate(s.trim_end().len());
            s
        })
        .collect()
}

mod detail;

#[cfg(test)]
mod tests;
