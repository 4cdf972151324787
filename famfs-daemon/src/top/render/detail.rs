//! The detail view of one file (Enter on its row): its counters and the processes that opened it, as
//! `/api/v1/file` reports them (a bounded top-N; the rest as "other").
//!
//! Pure: reads the [`App`]'s last detail answer and draws it in the file panel's place.

use ratatui::{
    Frame,
    layout::{Constraint, Layout, Rect},
    text::Line,
    widgets::{Block, Paragraph, Row, Table},
};

use super::{App, dim, header_row, right};
use crate::util::fmt::{fmt_bytes, fmt_count};

/// Draw `path`'s detail into `area`.
pub(super) fn render_detail(f: &mut Frame, app: &App, path: &str, area: Rect) {
    let block = Block::bordered().title(format!(" File: {path} "));
    let d = match &app.detail {
        None => {
            let msg = " waiting for the daemon's answer...";
            f.render_widget(Paragraph::new(Line::styled(msg, dim())).block(block), area);
            return;
        }
        Some(Err(e)) => {
            let msg = format!(" no detail: {e}");
            f.render_widget(Paragraph::new(Line::raw(msg)).block(block), area);
            return;
        }
        Some(Ok(d)) => d,
    };
    let inner = block.inner(area);
    f.render_widget(block, area);
    let [summary, procs] =
        Layout::vertical([Constraint::Length(2), Constraint::Min(0)]).areas(inner);
    let r = &d.file;
    let lines = vec![
        Line::raw(format!(
            " opens {} (errors {})  size {}  fmap {} B / {} extents",
            fmt_count(r.opens),
            fmt_count(r.open_errors),
            fmt_bytes(r.size),
            fmt_count(r.fmap_bytes),
            fmt_count(r.fmap_extents),
        )),
        Line::raw(format!(
            " faults: pte {}  pmd {}  fallback {}  error {}  page cache {}",
            fmt_count(r.faults_pte),
            fmt_count(r.faults_pmd),
            fmt_count(r.faults_fallback),
            fmt_count(r.faults_error),
            fmt_count(r.page_cache_faults),
        )),
    ];
    f.render_widget(Paragraph::new(lines), summary);
    let p = &d.processes;
    let mut rows: Vec<Row> = p
        .opens
        .iter()
        .map(|o| {
            Row::new([
                right(o.pid.to_string()),
                ratatui::widgets::Cell::from(if o.comm.is_empty() {
                    "(exited)".to_string()
                } else {
                    o.comm.clone()
                }),
                right(fmt_count(o.count)),
            ])
        })
        .collect();
    if p.other_opens > 0 {
        rows.push(Row::new([
            right("-".into()),
            ratatui::widgets::Cell::from("(other processes)"),
            right(fmt_count(p.other_opens)),
        ]));
    }
    let title = format!(" Processes that opened it: {} ", p.opens.len());
    let block = Block::bordered().title(title);
    if rows.is_empty() {
        let msg = " no opens seen since the daemon started";
        f.render_widget(Paragraph::new(Line::styled(msg, dim())).block(block), procs);
        return;
    }
    let widths = [
        Constraint::Length(8),
        Constraint::Min(16),
        Constraint::Length(8),
    ];
    let t = Table::new(rows, widths)
        .header(header_row(&[
            ("PID", true),
            ("COMM", false),
            ("OPENS", true),
        ]))
        .block(block);
    f.render_widget(t, procs);
}
