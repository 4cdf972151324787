//! The detail view of one file (Enter on its row): its counters, the processes that opened it and those that DAX-faulted on it, as
//! `/api/v1/file` reports them (a bounded top-N; the rest as "other").
//!
//! Pure: reads the [`App`]'s last detail answer and draws it in the file panel's place.

use ratatui::{
    Frame,
    layout::{Constraint, Layout, Rect},
    text::Line,
    widgets::{Block, Cell, Paragraph, Row, Table},
};

use super::{App, dim, header_row, right};
use crate::{
    http::api::ProcRow,
    util::fmt::{fmt_bytes, fmt_count},
};

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
    let [opens, faults] =
        Layout::vertical([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(procs);
    proc_table(f, "opened", "OPENS", &p.opens, p.other_opens, opens);
    proc_table(
        f,
        "DAX-faulted on",
        "FAULTS",
        &p.faults,
        p.other_faults,
        faults,
    );
}

/// One table of processes and their counts, with the "other" remainder as its last row.
fn proc_table(
    f: &mut Frame,
    verb: &str,
    column: &'static str,
    procs: &[ProcRow],
    other: u64,
    area: Rect,
) {
    let mut rows: Vec<Row> = procs
        .iter()
        .map(|o| {
            Row::new([
                right(o.pid.to_string()),
                Cell::from(if o.comm.is_empty() {
                    "(exited)".to_string()
                } else {
                    o.comm.clone()
                }),
                right(fmt_count(o.count)),
            ])
        })
        .collect();
    if other > 0 {
        rows.push(Row::new([
            right("-".into()),
            Cell::from("(other processes)"),
            right(fmt_count(other)),
        ]));
    }
    let block = Block::bordered().title(format!(" Processes that {verb} it: {} ", procs.len()));
    if rows.is_empty() {
        let msg = " none seen since the daemon started";
        f.render_widget(Paragraph::new(Line::styled(msg, dim())).block(block), area);
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
            (column, true),
        ]))
        .block(block);
    f.render_widget(t, area);
}
