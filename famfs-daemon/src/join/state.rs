//! The join's per-file state as the rest of the daemon shares it: the [`Join`], the filesystem's UUID and
//! the per-file series bound, behind one lock.
//!
//! Owns who may write: only the join (its worker thread, and tests inside `join`) takes the write half;
//! every reader (metrics, the HTTP views) gets [`SharedFileState::read`], a shared borrow, so a scrape or
//! an API call can never change what the join counted. Must not import any later stage.

use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::Join;

/// The per-file table of one served filesystem.
#[derive(Debug)]
pub struct FileState {
    pub join: Join,
    pub fs_uuid: String,
    /// `--max-file-series`: files beyond this (least recently active) fold into `path="__other__"`.
    pub max_series: usize,
}

/// The lock was poisoned: a thread panicked while it held the state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the per-file table is unavailable (a thread panicked while updating it)")]
pub struct StatePoisoned;

/// [`FileState`] shared between the join's worker (the only writer) and its readers.
#[derive(Clone, Debug)]
pub struct SharedFileState(Arc<RwLock<FileState>>);

impl SharedFileState {
    pub fn new(state: FileState) -> SharedFileState {
        SharedFileState(Arc::new(RwLock::new(state)))
    }

    /// A shared borrow of the state (readers never block each other).
    pub fn read(&self) -> Result<RwLockReadGuard<'_, FileState>, StatePoisoned> {
        self.0.read().map_err(|_| StatePoisoned)
    }

    /// The writer's borrow: only the join takes it.
    pub(super) fn write(&self) -> Result<RwLockWriteGuard<'_, FileState>, StatePoisoned> {
        self.0.write().map_err(|_| StatePoisoned)
    }
}
