//! What can be wrong with one log entry during replay (§10 E1-E3, F1-F4, D1, D2, and notes), how bad
//! it is, and its one-line message with the entry's index and device offset.
//!
//! Owns: [`Anomaly`], [`AnomalyKind`], [`Severity`] and their text. Must not decide when an anomaly
//! is recorded (that is the replay rules in the parent module).

use crate::famfs::format::{FmapProblem, FormatError, PathProblem, entry_type_name};

/// How bad an anomaly is. `fsck` fails on errors and warnings; notes are informational.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Note,
    Warning,
    Error,
}

impl Severity {
    /// Errors and warnings are problems (they make fsck unclean); notes are not.
    pub fn is_problem(self) -> bool {
        self != Severity::Note
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Severity::Note => "note",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// What went wrong with one log entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AnomalyKind {
    /// E1 (CRC/seqnum) or a log region too short: the play stopped here.
    Corrupt(FormatError),
    /// E2: DELETE, INVALID or an unknown type, ignored.
    IgnoredType { etype: u32, version: u64 },
    /// ADD_DAXDEV (v48): multi-device is not supported; ignored as the reference does.
    AddDaxdevIgnored { dd_index: u32 },
    /// E3: bad relpath; entry skipped.
    BadPath {
        path: Box<[u8]>,
        problem: PathProblem,
    },
    /// F1-F3: bad fmap; entry skipped.
    BadFmap {
        path: Box<[u8]>,
        problem: FmapProblem,
    },
    /// F4: the extents claim space already claimed (by `other`, when a live file owns it). The entry is
    /// still applied.
    Collision {
        path: Box<[u8]>,
        offset: u64,
        other: Option<u64>,
    },
    /// D1: the path exists; the first entry wins. `conflict` = the existing object is of another kind.
    Exists {
        path: Box<[u8]>,
        existing: u64,
        conflict: bool,
    },
    /// D2: a parent component is missing (`not_dir` = it exists but is a file); entry skipped.
    NoParent {
        path: Box<[u8]>,
        missing: Box<[u8]>,
        not_dir: bool,
    },
}

/// An anomaly found while applying log entry `index` (at device byte `offset`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Anomaly {
    pub index: u64,
    pub offset: u64,
    pub kind: AnomalyKind,
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl Anomaly {
    /// The §10 check ("E1", "E2", "E3", "F1".."F4", "D1", "D2"; "NOTE" for ignored ADD_DAXDEV).
    pub fn code(&self) -> &'static str {
        match &self.kind {
            AnomalyKind::Corrupt(e) => e.code(),
            AnomalyKind::IgnoredType { .. } => "E2",
            AnomalyKind::AddDaxdevIgnored { .. } => "NOTE",
            AnomalyKind::BadPath { .. } => "E3",
            AnomalyKind::BadFmap { problem, .. } => problem.code(),
            AnomalyKind::Collision { .. } => "F4",
            AnomalyKind::Exists { .. } => "D1",
            AnomalyKind::NoParent { .. } => "D2",
        }
    }

    pub fn severity(&self) -> Severity {
        match &self.kind {
            AnomalyKind::AddDaxdevIgnored { .. } => Severity::Note,
            AnomalyKind::Collision { .. } => Severity::Warning,
            AnomalyKind::Exists { conflict, .. } => {
                if *conflict {
                    Severity::Error
                } else {
                    Severity::Warning
                }
            }
            _ => Severity::Error,
        }
    }

    /// True when the play stopped at this entry.
    pub fn is_stop(&self) -> bool {
        matches!(self.kind, AnomalyKind::Corrupt(_))
    }
}

impl std::fmt::Display for Anomaly {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at = format!("log entry {} (byte offset {:#x})", self.index, self.offset);
        match &self.kind {
            AnomalyKind::Corrupt(e) => write!(f, "{e}; log play stopped at entry {}", self.index),
            AnomalyKind::IgnoredType { etype, version } => write!(
                f,
                "[E2] {at}: entry type {etype} ({}) is not played; ignored",
                entry_type_name(*etype, *version)
            ),
            AnomalyKind::AddDaxdevIgnored { dd_index } => write!(
                f,
                "[NOTE] {at}: ADD_DAXDEV for device index {dd_index} ignored (single-device only)"
            ),
            AnomalyKind::BadPath { path, problem } => {
                write!(f, "[E3] {at}: {problem} ({:?}); entry skipped", lossy(path))
            }
            AnomalyKind::BadFmap { path, problem } => {
                write!(f, "{problem} in {at} for {:?}; entry skipped", lossy(path))
            }
            AnomalyKind::Collision {
                path,
                offset,
                other,
            } => {
                let by = match other {
                    Some(o) => format!("inode {o}"),
                    None => "an earlier entry".to_string(),
                };
                write!(
                    f,
                    "[F4] {at}: {:?} claims device space at {offset:#x} already allocated to {by} (allocation collision)",
                    lossy(path)
                )
            }
            AnomalyKind::Exists {
                path,
                existing,
                conflict,
            } => {
                if *conflict {
                    write!(
                        f,
                        "[D1] {at}: {:?} already exists as inode {existing} of another kind; entry skipped",
                        lossy(path)
                    )
                } else {
                    write!(
                        f,
                        "[D1] {at}: duplicate {:?} (inode {existing} exists; the first entry wins)",
                        lossy(path)
                    )
                }
            }
            AnomalyKind::NoParent {
                path,
                missing,
                not_dir,
            } => {
                let why = if *not_dir {
                    "is not a directory"
                } else {
                    "does not exist"
                };
                write!(
                    f,
                    "[D2] {at}: parent {:?} of {:?} {why}; entry skipped",
                    lossy(missing),
                    lossy(path)
                )
            }
        }
    }
}
