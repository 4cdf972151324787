//! The join's per-file state as the rest of the daemon shares it: the [`Join`], the filesystem's UUID and
//! the per-file series bound, behind one lock.
//!
//! Owns who may write: only the join (its worker thread, and tests inside `join`) takes the write half;
//! every reader (metrics, the HTTP views) gets [`SharedFileState::read`], a shared borrow, so a scrape or
//! an API call can never change what the join counted. Must not import any later stage.

use std::{
    sync::{
        Arc, RwLock, RwLockReadGuard, RwLockWriteGuard,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

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
pub struct SharedFileState(Arc<Shared>);

#[derive(Debug)]
struct Shared {
    lock: RwLock<FileState>,
    /// Writers waiting for the lock (the join's worker: 0 or 1).
    writers_waiting: AtomicUsize,
}

/// How long [`SharedFileState::read`] lets a waiting writer go first at most.
const WRITER_GRACE: Duration = Duration::from_millis(2);

impl SharedFileState {
    pub fn new(state: FileState) -> SharedFileState {
        SharedFileState(Arc::new(Shared {
            lock: RwLock::new(state),
            writers_waiting: AtomicUsize::new(0),
        }))
    }

    /// A shared borrow of the state (readers never block each other). While the join waits to write,
    /// the reader first yields (at most [`WRITER_GRACE`]) until the join has the lock: otherwise a
    /// reader taking the lock batch after batch (a listing of every file) wins every time, since the
    /// lock lets a new reader in while the writer woken at the last unlock is still on its way, and
    /// the join waits for the whole listing. Costs one atomic load when no writer waits.
    pub fn read(&self) -> Result<RwLockReadGuard<'_, FileState>, StatePoisoned> {
        self.let_writer_in_within(WRITER_GRACE);
        self.0.lock.read().map_err(|_| StatePoisoned)
    }

    fn let_writer_in_within(&self, grace: Duration) {
        if self.0.writers_waiting.load(Ordering::Acquire) == 0 {
            return;
        }
        let t = Instant::now();
        while self.0.writers_waiting.load(Ordering::Acquire) > 0 && t.elapsed() < grace {
            std::thread::yield_now();
        }
    }

    /// How long the writer waits now for the table: takes the write lock and lets it go at once,
    /// changing nothing. Measures how long readers keep the join from writing (`benches/join.rs`).
    pub fn writer_wait(&self) -> Result<Duration, StatePoisoned> {
        let t = Instant::now();
        drop(self.write()?);
        Ok(t.elapsed())
    }

    /// The writer's borrow: only the join takes it.
    pub(super) fn write(&self) -> Result<RwLockWriteGuard<'_, FileState>, StatePoisoned> {
        self.0.writers_waiting.fetch_add(1, Ordering::AcqRel);
        let g = self.0.lock.write().map_err(|_| StatePoisoned);
        self.0.writers_waiting.fetch_sub(1, Ordering::AcqRel);
        g
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> SharedFileState {
        SharedFileState::new(FileState {
            join: Join::new(1, 1, 0, 0),
            fs_uuid: String::new(),
            max_series: 1,
        })
    }

    /// A reader between batches lets a waiting writer in before it reads again: its next read sees
    /// the write. (A generous grace: the writer thread only has to be scheduled.)
    #[test]
    fn a_waiting_writer_goes_before_the_next_batch() {
        let s = state();
        let batch = s.read().unwrap();
        std::thread::scope(|t| {
            let w = t.spawn(|| s.write().unwrap().max_series = 7);
            while s.0.writers_waiting.load(Ordering::Acquire) == 0 {
                std::thread::yield_now();
            }
            drop(batch);
            s.let_writer_in_within(Duration::from_secs(30));
            assert_eq!(s.read().unwrap().max_series, 7, "the write came first");
            w.join().unwrap();
        });
        assert_eq!(s.0.writers_waiting.load(Ordering::Acquire), 0);
    }

    #[test]
    fn no_writer_no_wait() {
        let s = state();
        let t = Instant::now();
        s.let_writer_in_within(Duration::from_secs(30));
        assert!(t.elapsed() < Duration::from_secs(30));
        assert_eq!(s.writer_wait().map(|_| ()), Ok(()));
    }
}
