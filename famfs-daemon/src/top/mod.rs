//! `famfs-trace top`: a live terminal view of a running daemon, built like bpftop: the [`collector`]
//! polls the daemon's `/api/v1/snapshot` on its own thread and computes rates, [`app`] holds the view
//! state, [`render`] draws it (generic over the ratatui backend), [`input`] maps keys to actions. This
//! file owns the terminal (raw mode, alternate screen, restored on drop and on panic) and the event
//! loop, and the one-frame `--once` mode. The data it shows is `http::api`'s schema.
//!
//! Must not touch the daemon's state: it only reads its HTTP API (JSON).

pub mod app;
pub mod collector;
pub mod input;
pub mod render;

use std::{
    io::{self, Stdout, Write},
    net::SocketAddr,
    sync::{
        Once,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use crossterm::{
    cursor,
    event::{self, Event},
    execute,
    terminal::{self, EnterAlternateScreen, LeaveAlternateScreen},
};
use ratatui::{
    Terminal,
    backend::{CrosstermBackend, TestBackend},
    layout::Rect,
};

use app::{App, Effect};
use collector::{Collector, Update};

use crate::{
    http::client::{Client, ClientSecurity},
    join::{FileQuery, FileSort},
};

/// Settings of one `top` run.
#[derive(Clone, Debug)]
pub struct TopConfig {
    pub addr: SocketAddr,
    /// TLS and credentials for the daemon (plain HTTP by default).
    pub security: ClientSecurity,
    /// As the operator typed it (shown in the header).
    pub addr_text: String,
    pub interval: Duration,
    pub sort: FileSort,
    pub filter: String,
    pub limit: usize,
}

impl TopConfig {
    fn app(&self) -> App {
        App::new(
            self.addr_text.clone(),
            self.interval,
            self.sort,
            self.filter.clone(),
            self.limit,
        )
    }
}

/// True while the terminal is in raw mode on the alternate screen.
static TERMINAL_TAKEN: AtomicBool = AtomicBool::new(false);
static PANIC_HOOK: Once = Once::new();

/// Put the terminal back (leave the alternate screen, show the cursor, cooked mode). Idempotent; safe
/// from a panic hook.
fn restore_terminal() {
    if TERMINAL_TAKEN.swap(false, Ordering::SeqCst) {
        let _ = terminal::disable_raw_mode();
        let mut out = io::stdout();
        let _ = execute!(out, LeaveAlternateScreen, cursor::Show);
        let _ = out.flush();
    }
}

/// Owns the terminal while `top` runs; restores it when dropped, and (through a panic hook installed
/// once) when the program panics, before the panic message is printed.
#[derive(Debug)]
pub struct TerminalGuard {
    _private: (),
}

impl TerminalGuard {
    pub fn enter() -> io::Result<TerminalGuard> {
        PANIC_HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                restore_terminal();
                previous(info);
            }));
        });
        terminal::enable_raw_mode()?;
        TERMINAL_TAKEN.store(true, Ordering::SeqCst);
        let guard = TerminalGuard { _private: () };
        // On error the guard's drop restores what was set.
        execute!(io::stdout(), EnterAlternateScreen, cursor::Hide)?;
        Ok(guard)
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore_terminal();
    }
}

/// How long the event loop waits for a key before looking at the collector again.
const INPUT_POLL: Duration = Duration::from_millis(100);

/// The interactive view: runs until the operator quits.
pub fn run_live(cfg: &TopConfig) -> Result<()> {
    let (tx, rx) = mpsc::channel();
    let mut app = cfg.app();
    let collector = Collector::spawn(
        cfg.addr,
        cfg.security.clone(),
        cfg.interval,
        app.query(),
        tx,
    )
    .context("starting the polling thread")?;
    let guard = TerminalGuard::enter().context("taking the terminal (is stdout a terminal?)")?;
    let mut term: Terminal<CrosstermBackend<Stdout>> =
        Terminal::new(CrosstermBackend::new(io::stdout())).context("setting up the terminal")?;
    let res = event_loop(&mut term, &mut app, &collector, &rx);
    drop(term);
    drop(guard);
    drop(collector);
    res
}

fn event_loop(
    term: &mut Terminal<CrosstermBackend<Stdout>>,
    app: &mut App,
    collector: &Collector,
    rx: &mpsc::Receiver<Update>,
) -> Result<()> {
    let mut dirty = true;
    loop {
        loop {
            match rx.try_recv() {
                Ok(u) => dirty |= app.apply(u),
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => {
                    anyhow::bail!("the polling thread stopped")
                }
            }
        }
        dirty |= app.tick(Instant::now());
        if dirty {
            let size = term.size()?;
            app.page = render::file_rows_visible(app, Rect::new(0, 0, size.width, size.height));
            term.draw(|f| render::render(f, app))?;
            dirty = false;
        }
        if !event::poll(INPUT_POLL)? {
            continue;
        }
        match event::read()? {
            Event::Key(k) => {
                if let Some(a) = input::action_for(&k, &app.mode) {
                    match app.handle(a) {
                        Effect::Quit => return Ok(()),
                        Effect::Query(q) => collector.set_query(q),
                        Effect::Detail(p) => collector.set_detail(p),
                        Effect::None => {}
                    }
                    dirty = true;
                }
            }
            Event::Resize(..) => dirty = true,
            _ => {}
        }
    }
}

/// Draw one frame of `app` as plain text, `width` columns wide and tall enough for every row.
pub fn frame_text(app: &App, width: u16) -> Result<String> {
    let mut term = Terminal::new(TestBackend::new(width, render::full_height(app)))?;
    term.draw(|f| render::render(f, app))?;
    let mut out = String::new();
    for l in render::buffer_lines(term.backend().buffer()) {
        out.push_str(&l);
        out.push('\n');
    }
    Ok(out)
}

/// `--once`: sample the daemon (twice, `interval` apart, so rates are real; once when the interval is
/// zero) and return the frame as text and whether the daemon answered.
pub fn run_once(cfg: &TopConfig, width: u16) -> Result<(String, bool)> {
    let mut app = cfg.app();
    let q: FileQuery = app.query();
    let client = Client::new(cfg.addr, collector::timeout_for(cfg.interval))
        .context("starting the HTTP client")?
        .with_security(cfg.security.clone());
    let first = collector::fetch_snapshot(&client, &q);
    let t0 = Instant::now();
    let update = match first {
        Err(e) => Update::Unreachable {
            reason: e.to_string(),
            at: t0,
        },
        Ok(s0) if cfg.interval.is_zero() => Update::Data {
            rates: collector::rates(None, &s0),
            snapshot: Box::new(s0),
            at: t0,
        },
        Ok(s0) => {
            // The sampling interval itself, not a synchronisation.
            std::thread::sleep(cfg.interval);
            match collector::fetch_snapshot(&client, &q) {
                Err(e) => Update::Unreachable {
                    reason: e.to_string(),
                    at: Instant::now(),
                },
                Ok(s1) => {
                    let at = Instant::now();
                    Update::Data {
                        rates: collector::rates(Some((&s0, at.duration_since(t0))), &s1),
                        snapshot: Box::new(s1),
                        at,
                    }
                }
            }
        }
    };
    let ok = matches!(update, Update::Data { .. });
    app.apply(update);
    app.tick(Instant::now());
    Ok((frame_text(&app, width)?, ok))
}
