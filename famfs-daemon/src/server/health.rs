//! The server's health as `/healthz` reports it ([`FamfsFs::health`]): whether the data the mount
//! serves can be trusted.
//!
//! Three conditions, most serious first:
//! * stale (permanent): a refresh found the filesystem re-created ("reformatted") or its log gone
//!   back ("log regressed"). The extent maps in memory describe a filesystem that no longer exists,
//!   so READ, WRITE and GET_FMAP answer EIO from then on; said once in the log; only a restart
//!   serves the image as it is now;
//! * shrunk (while it lasts): the image file is shorter than the filesystem's `dd_size`;
//! * recent I/O failures: a READ, WRITE or flush failed within the last [`RECENT`].
//!
//! Owns the state and its wording. Must not decide when refreshes run (that is `refresh`) or map
//! errors to errnos (that is `data`).

use std::{
    sync::{
        OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use super::FamfsFs;
use crate::util::monotonic_ns;

/// How long an I/O failure keeps `/healthz` degraded.
pub const RECENT: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
pub(super) struct Health {
    /// Why the extent maps are no longer used (set once).
    stale: OnceLock<String>,
    /// The image's length while it is shorter than the filesystem (0: it is not).
    shrunk_to: AtomicU64,
}

impl FamfsFs {
    /// Why this filesystem should not be trusted now, or None when it is healthy: stale maps, a shrunk
    /// image, or I/O failures within the last [`RECENT`].
    pub fn health(&self) -> Option<String> {
        let h = &self.inner.health;
        if let Some(why) = h.stale.get() {
            return Some(why.clone());
        }
        let len = h.shrunk_to.load(Ordering::Acquire);
        if len != 0 {
            return Some(format!(
                "degraded: the image shrank to {len:#x} bytes, below the filesystem's {:#x}: files stored past its end answer EIO",
                self.inner.dev_size
            ));
        }
        let f = self.inner.data.last_fault()?;
        let age = Duration::from_nanos(monotonic_ns().saturating_sub(f.at_ns));
        if age > RECENT {
            return None;
        }
        Some(format!(
            "degraded: {} I/O failure(s) on the image, the last {:.0} s ago: {} of inode {} at device offset {:#x}: {}",
            self.inner.data.faults(),
            age.as_secs_f64(),
            f.op.as_str(),
            f.ino,
            f.dev_off,
            std::io::Error::from_raw_os_error(f.errno)
        ))
    }

    /// True once the extent maps must no longer be used.
    pub fn is_stale(&self) -> bool {
        self.inner.health.stale.get().is_some()
    }

    /// The reason the maps went stale, if they did.
    pub(super) fn stale_reason(&self) -> Option<&str> {
        self.inner.health.stale.get().map(String::as_str)
    }

    /// Stop serving data from the extent maps because of `why`; logged the first time only. Returns
    /// the reason as [`FamfsFs::health`] says it.
    pub(super) fn mark_stale(&self, why: &str) -> String {
        let msg = format!(
            "stale: {why}; file data is no longer served from the old extent maps (READ, WRITE and GET_FMAP answer EIO): restart the daemon to serve the image as it is now"
        );
        if self.inner.health.stale.set(msg.clone()).is_ok() {
            log::error!("famfs: {msg}");
        }
        self.inner.health.stale.get().cloned().unwrap_or(msg)
    }

    /// Record the image's current length `len` against the filesystem's size; returns true when it
    /// is too short. Changes are logged.
    pub(super) fn note_image_len(&self, len: u64) -> bool {
        let short = len < self.inner.dev_size;
        let now = if short { len.max(1) } else { 0 };
        let was = self.inner.health.shrunk_to.swap(now, Ordering::AcqRel);
        if was == 0 && short {
            log::error!(
                "famfs: the image shrank to {len:#x} bytes, below the filesystem's {:#x}: files stored past its end answer EIO",
                self.inner.dev_size
            );
        } else if was != 0 && !short {
            log::info!("famfs: the image is whole again ({len:#x} bytes)");
        }
        short
    }
}
