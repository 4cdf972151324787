//! The state of `famfs-trace top`: the latest snapshot and rates, the link to the daemon, the sort key,
//! filter (and the filter being typed), pause, help, the selected file row and its detail view. Changes only through
//! [`App::apply`] (collector updates), [`App::handle`] (user actions) and [`App::tick`] (the clock).
//!
//! Pure: no I/O, no locks, no clock reads (time comes in as arguments). Sorting and filtering happen
//! here, once per new snapshot or key press, never per drawn frame: the renderer only reads
//! [`App::order`]. The sort keys and their order are the daemon's ([`FileSort`]).

use std::time::{Duration, Instant};

use super::collector::{Rates, Update};
use crate::{
    http::api::{FileDetail, FileRow, Snapshot},
    join::{FileQuery, FileSort},
};

/// Whether keys drive the view or edit the filter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    Normal,
    /// Typing a filter; the text so far.
    Filter(String),
    /// The detail view of one file (Enter on its row): the processes that opened it.
    Detail(String),
}

/// The link to the daemon.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Link {
    /// No answer yet.
    Connecting,
    Up,
    /// The last poll failed; data shown (if any) is from the last good poll.
    Down(String),
}

/// What a key asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Quit,
    CycleSort,
    StartFilter,
    FilterChar(char),
    FilterBackspace,
    FilterApply,
    FilterCancel,
    TogglePause,
    Up,
    Down,
    PageUp,
    PageDown,
    Home,
    End,
    ToggleHelp,
    /// Open the selected file's detail view.
    OpenDetail,
    /// Back to the table.
    CloseDetail,
}

/// What the caller must do after an action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    None,
    /// Ask the collector for this file query.
    Query(FileQuery),
    /// Ask the collector for this file's detail too (`None`: stop asking).
    Detail(Option<String>),
    Quit,
}

/// The view state.
#[derive(Clone, Debug)]
pub struct App {
    pub addr: String,
    pub interval: Duration,
    /// `limit=` of the file query.
    pub limit: usize,
    pub sort: FileSort,
    /// Applied filter (path substring; empty: none).
    pub filter: String,
    pub mode: Mode,
    pub paused: bool,
    pub help: bool,
    /// Index into [`App::order`].
    pub selected: usize,
    pub link: Link,
    /// Whether any poll succeeded (else the snapshot is empty because nothing is known).
    pub has_data: bool,
    pub snapshot: Snapshot,
    /// The detail view's data (for [`Mode::Detail`]): the last answer about that file, or why none came.
    pub detail: Option<Result<FileDetail, String>>,
    pub rates: Rates,
    /// Indices into `snapshot.files` that pass the filter, in sort order.
    pub order: Vec<usize>,
    /// Per file (same index as `snapshot.files`): OPEN latency p99 in seconds.
    pub open_p99: Vec<Option<f64>>,
    last_update: Option<Instant>,
    /// Time since the last good poll, as of the last [`App::tick`].
    pub age: Option<Duration>,
    /// Rows the file table showed in the last frame (for page up/down); set by the renderer's caller.
    pub page: usize,
}

impl App {
    pub fn new(
        addr: String,
        interval: Duration,
        sort: FileSort,
        filter: String,
        limit: usize,
    ) -> App {
        App {
            addr,
            interval,
            limit,
            sort,
            filter,
            mode: Mode::Normal,
            paused: false,
            help: false,
            selected: 0,
            link: Link::Connecting,
            has_data: false,
            snapshot: Snapshot::default(),
            detail: None,
            rates: Rates::default(),
            order: Vec::new(),
            open_p99: Vec::new(),
            last_update: None,
            age: None,
            page: 10,
        }
    }

    /// The file query matching the current sort and filter.
    pub fn query(&self) -> FileQuery {
        FileQuery {
            sort: self.sort,
            limit: self.limit,
            path: (!self.filter.is_empty()).then(|| self.filter.clone()),
        }
    }

    /// Take a collector update. Ignored while paused (the screen stays frozen). Returns whether the
    /// view changed.
    pub fn apply(&mut self, u: Update) -> bool {
        if self.paused {
            return false;
        }
        match u {
            Update::Data {
                snapshot,
                rates,
                at,
            } => {
                self.snapshot = *snapshot;
                self.rates = rates;
                self.link = Link::Up;
                self.has_data = true;
                self.last_update = Some(at);
                self.age = Some(Duration::ZERO);
                self.open_p99 = self
                    .snapshot
                    .files
                    .iter()
                    .map(|f| f.open_latency().quantile(0.99))
                    .collect();
                self.reorder();
            }
            Update::Unreachable { reason, .. } => self.link = Link::Down(reason),
            Update::Detail { path, answer } => {
                if self.mode != Mode::Detail(path) {
                    return false;
                }
                self.detail = Some(answer.map(|d| *d));
            }
        }
        true
    }

    /// Advance the clock; returns whether the shown age changed by a tenth of a second or more.
    pub fn tick(&mut self, now: Instant) -> bool {
        let age = self.last_update.map(|t| now.saturating_duration_since(t));
        let changed = match (age, self.age) {
            (Some(a), Some(b)) => a.abs_diff(b) >= Duration::from_millis(100),
            (a, b) => a.is_some() != b.is_some(),
        };
        if changed {
            self.age = age;
        }
        changed
    }

    /// Recompute [`App::order`] from the snapshot, sort key and filter; keeps the selection in range.
    pub fn reorder(&mut self) {
        let files = &self.snapshot.files;
        self.order.clear();
        self.order.extend(
            (0..files.len())
                .filter(|&i| self.filter.is_empty() || files[i].path.contains(&self.filter)),
        );
        let key = self.sort;
        self.order
            .sort_by(|&a, &b| key.compare(&files[a].sort_fields(), &files[b].sort_fields()));
        self.selected = self.selected.min(self.order.len().saturating_sub(1));
    }

    /// The file under the cursor.
    pub fn selected_file(&self) -> Option<&FileRow> {
        self.order
            .get(self.selected)
            .and_then(|&i| self.snapshot.files.get(i))
    }

    /// Apply a user action.
    pub fn handle(&mut self, a: Action) -> Effect {
        let last = self.order.len().saturating_sub(1);
        match a {
            Action::Quit => return Effect::Quit,
            Action::CycleSort => {
                self.sort = self.sort.next();
                self.reorder();
                return Effect::Query(self.query());
            }
            Action::StartFilter => self.mode = Mode::Filter(self.filter.clone()),
            Action::FilterChar(c) => {
                if let Mode::Filter(d) = &mut self.mode {
                    d.push(c);
                }
            }
            Action::FilterBackspace => {
                if let Mode::Filter(d) = &mut self.mode {
                    d.pop();
                }
            }
            Action::FilterApply => {
                if let Mode::Filter(d) = std::mem::replace(&mut self.mode, Mode::Normal) {
                    self.filter = d;
                    self.selected = 0;
                    self.reorder();
                    return Effect::Query(self.query());
                }
            }
            Action::FilterCancel => self.mode = Mode::Normal,
            Action::TogglePause => self.paused = !self.paused,
            Action::Up => self.selected = self.selected.saturating_sub(1),
            Action::Down => self.selected = (self.selected + 1).min(last),
            Action::PageUp => self.selected = self.selected.saturating_sub(self.page.max(1)),
            Action::PageDown => self.selected = (self.selected + self.page.max(1)).min(last),
            Action::Home => self.selected = 0,
            Action::End => self.selected = last,
            Action::ToggleHelp => self.help = !self.help,
            Action::OpenDetail => {
                if let Some(path) = self.selected_file().map(|f| f.path.clone()) {
                    self.mode = Mode::Detail(path.clone());
                    self.detail = None;
                    return Effect::Detail(Some(path));
                }
            }
            Action::CloseDetail => {
                self.mode = Mode::Normal;
                self.detail = None;
                return Effect::Detail(None);
            }
        }
        Effect::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, opens: u64, fmap: u64, last: u64) -> FileRow {
        FileRow {
            path: path.into(),
            opens,
            fmap_bytes: fmap,
            last_access_ns: last,
            ..Default::default()
        }
    }

    fn app_with(files: Vec<FileRow>) -> App {
        let mut a = App::new(
            "127.0.0.1:1".into(),
            Duration::from_secs(1),
            FileSort::Opens,
            String::new(),
            100,
        );
        a.apply(Update::Data {
            snapshot: Box::new(Snapshot {
                files,
                ..Default::default()
            }),
            rates: Rates::default(),
            at: Instant::now(),
        });
        a
    }

    fn paths(a: &App) -> Vec<&str> {
        a.order
            .iter()
            .map(|&i| a.snapshot.files[i].path.as_str())
            .collect()
    }

    #[test]
    fn sort_cycle_and_orders() {
        let mut a = app_with(vec![
            file("b", 5, 100, 30),
            file("a", 5, 300, 10),
            file("c", 9, 200, 20),
        ]);
        assert_eq!(paths(&a), ["c", "a", "b"]);
        let eff = a.handle(Action::CycleSort);
        assert_eq!(a.sort, FileSort::Faults);
        assert_eq!(
            eff,
            Effect::Query(FileQuery {
                sort: FileSort::Faults,
                path: None,
                limit: 100
            })
        );
        a.handle(Action::CycleSort);
        assert_eq!(paths(&a), ["a", "c", "b"]);
        a.handle(Action::CycleSort);
        assert_eq!(a.sort, FileSort::Path);
        assert_eq!(paths(&a), ["a", "b", "c"]);
        a.handle(Action::CycleSort);
        assert_eq!(a.sort, FileSort::LastAccess);
        assert_eq!(paths(&a), ["b", "c", "a"]);
        a.handle(Action::CycleSort);
        assert_eq!(a.sort, FileSort::Opens);
    }

    #[test]
    fn filter_editing_selection_and_pause() {
        let mut a = app_with(vec![
            file("data/x", 1, 0, 0),
            file("logs/y", 2, 0, 0),
            file("data/z", 3, 0, 0),
        ]);
        a.handle(Action::End);
        assert_eq!(a.selected, 2);
        a.handle(Action::Down);
        assert_eq!(a.selected, 2);
        a.handle(Action::StartFilter);
        for c in "datx".chars() {
            a.handle(Action::FilterChar(c));
        }
        a.handle(Action::FilterBackspace);
        a.handle(Action::FilterChar('a'));
        assert_eq!(a.mode, Mode::Filter("data".into()));
        assert_eq!(a.filter, "");
        let eff = a.handle(Action::FilterApply);
        assert_eq!(
            eff,
            Effect::Query(FileQuery {
                sort: FileSort::Opens,
                path: Some("data".into()),
                limit: 100
            })
        );
        assert_eq!(paths(&a), ["data/z", "data/x"]);
        assert_eq!(a.selected, 0);
        a.handle(Action::Down);
        assert_eq!(a.selected_file().map(|f| f.path.as_str()), Some("data/x"));
        a.handle(Action::StartFilter);
        a.handle(Action::FilterChar('q'));
        a.handle(Action::FilterCancel);
        assert_eq!((a.mode.clone(), a.filter.as_str()), (Mode::Normal, "data"));

        a.handle(Action::TogglePause);
        let changed = a.apply(Update::Unreachable {
            reason: "x".into(),
            at: Instant::now(),
        });
        assert!(!changed);
        assert_eq!(a.link, Link::Up);
        a.handle(Action::TogglePause);
        a.apply(Update::Unreachable {
            reason: "connection refused".into(),
            at: Instant::now(),
        });
        assert_eq!(a.link, Link::Down("connection refused".into()));
        assert_eq!(a.handle(Action::Quit), Effect::Quit);
    }

    /// The daemon's catalog for the faults test: inode `n` is the file `/{n}`.
    struct Inodes;

    impl crate::server::Catalog for Inodes {
        fn file(&self, nodeid: u64) -> Option<crate::server::FileInfo> {
            Some(crate::server::FileInfo {
                path: format!("/{nodeid}"),
                ..Default::default()
            })
        }
    }

    #[test]
    fn faults_sort_counts_error_faults_like_the_daemon() {
        use crate::{
            join::{Join, query},
            probes::{FaultRow, ProbeSnapshot},
        };
        use famfs_common::fault::{
            FaultKey, FaultStats, FileKey, RESULT_ERROR, RESULT_FALLBACK, RESULT_OK, SIZE_PMD,
            SIZE_PTE,
        };
        // The kernel's fault counters, as the daemon joins them: /1 has 2 PTE faults; /2 only
        // errors (3 PTE, 1 PMD); /3 one PMD fault, one fallback and one error; /4 3 page-cache
        // faults. Totals with errors: /2 4, /3 3, /4 3, /1 2 (without: /3 2, /2 0).
        let row = |ino: u64, size: u8, result: u8, count: u64| FaultRow {
            key: FaultKey {
                dev: 7,
                size,
                result,
                write: 0,
                _pad: 0,
                ino,
            },
            stats: FaultStats {
                count,
                ..FaultStats::ZERO
            },
        };
        let snap = ProbeSnapshot {
            faults: vec![
                row(1, SIZE_PTE, RESULT_OK, 2),
                row(2, SIZE_PTE, RESULT_ERROR, 3),
                row(2, SIZE_PMD, RESULT_ERROR, 1),
                row(3, SIZE_PMD, RESULT_OK, 1),
                row(3, SIZE_PMD, RESULT_FALLBACK, 1),
                row(3, SIZE_PMD, RESULT_ERROR, 1),
            ],
            filemap: vec![(
                FileKey {
                    dev: 7,
                    _pad: 0,
                    ino: 4,
                },
                3,
            )],
            ..Default::default()
        };
        let mut join = Join::new(7, 1, 0, 54);
        for ino in 1..=4 {
            assert!(join.track(ino, &Inodes));
        }
        join.apply_fault_snapshot(&snap, 1);
        let q = FileQuery {
            sort: FileSort::Faults,
            ..Default::default()
        };
        let views: Vec<FileRow> = query(&join, &q)
            .into_iter()
            .map(|f| FileRow::of(f, 0))
            .collect();
        let daemon: Vec<&str> = views.iter().map(|v| v.path.as_str()).collect();
        assert_eq!(daemon, ["/2", "/3", "/4", "/1"]);
        // What `top` reads from /api/v1/files, in another order, sorted by `top` with the same key.
        let json = serde_json::to_string(&views).unwrap();
        let mut rows: Vec<FileRow> = serde_json::from_str(&json).unwrap();
        assert_eq!(
            rows.iter()
                .map(|r| (r.path.as_str(), r.faults_error, r.faults()))
                .collect::<Vec<_>>(),
            [("/2", 4, 4), ("/3", 1, 3), ("/4", 0, 3), ("/1", 0, 2)]
        );
        rows.reverse();
        let mut a = app_with(rows);
        a.sort = FileSort::Faults;
        a.reorder();
        assert_eq!(paths(&a), daemon);
    }

    #[test]
    fn tick_reports_age_changes() {
        let mut a = app_with(vec![]);
        let t0 = a.last_update.unwrap();
        assert!(!a.tick(t0 + Duration::from_millis(50)));
        assert!(a.tick(t0 + Duration::from_millis(150)));
        assert_eq!(a.age, Some(Duration::from_millis(150)));
    }
}
