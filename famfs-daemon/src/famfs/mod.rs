//! famfs on-media format: a byte-compatible reader/writer of the reference famfs filesystem
//! (superblock versions 47 and 48; reference: `/work/shared/docs/famfs-format.md`).
//!
//! Layers, bottom up, each with its own error type:
//! * [`format`]: constants, structures, checked decoders and byte-exact encoders, CRCs (S1-S5, H1-H3,
//!   E1, E3, F1-F3 checks that need only the bytes and the geometry), one file per on-media structure;
//!   the one owner of every byte offset (e.g. the log header's `next_index`, which the server polls);
//! * [`store`]: the image file, block device (pread/pwrite) or DAX device (mapped), opened once, every
//!   access bounds-checked, flush = fdatasync;
//! * [`replay`]: log replay into the [`Namespace`] (deterministic inode ids, incremental, anomalies with
//!   their log index: E2, D1, D2, F4; the anomaly types in `replay/anomaly.rs`);
//! * [`alloc`]: the allocated 2 MiB units as an interval map rebuilt from the log, and the
//!   simple/striped allocators;
//! * [`log`]: crash-safe append (entries flushed before the header advances), master-only;
//! * [`role`]: this host's UUID and the master/client rule;
//! * [`image`]: [`Image`], which ties them together for the CLI and the FUSE server (mkfs in
//!   `image/mkfs.rs`, crash-honest creation with contents in `image/fill.rs`);
//! * [`fsck`]: all checks as a report.
//!
//! Owns the bytes of a famfs device. Must not know about FUSE, probes or metrics.
//!
//! Tests: `tests/` holds one file per layer (format, replay, image, fuzz) over shared fixtures.
//! Fuzzing: `tests::fuzz::fuzz_*` are proptest properties over decode + replay (random bytes, and
//! valid images with random byte flips) that run briefly in every `cargo test`. Run them longer with
//! `PROPTEST_CASES=100000 cargo test -p famfs-daemon --lib famfs::tests::fuzz -- --nocapture`.

pub mod alloc;
pub mod format;
pub mod fsck;
pub mod image;
pub mod log;
pub mod replay;
pub mod role;
pub mod store;

#[cfg(test)]
mod tests;

pub use alloc::{AllocError, SpaceMap, StripeSpec};
pub use format::{Extent, Fmap, FormatError, Geometry, LogHeader, Superblock};
pub use fsck::{Finding, FsckReport};
pub use image::{Image, ImageError, ImageOptions, MkfsOptions, Refresh};
pub use log::LogError;
pub use replay::{
    Added, Anomaly, AnomalyKind, FIRST_LOG_INO, Inode, InodeKind, LOG_INO, META_DIR_INO, Namespace,
    ROOT_INO, SUPERBLOCK_INO, Severity, entry_ino,
};
pub use role::{Role, RoleError};
pub use store::{Store, StoreError};
