//! famfs-trace: a famfs FUSE server with eBPF observability.
//!
//! The data path through this crate is one-way and each stage owns its folder:
//! image (`famfs`) → log replay (`famfs::replay`) → inode table → FUSE server (`fuse`, `server`)
//! → events (`probes`, server records) → join (`join`) → metrics (`metrics`), HTTP API (`http`) →
//! views and front ends (`top`, `regress`, `daemon`, `cli`; the image tools are `cli::image_cmd`).

pub mod cli;
pub mod daemon;
pub mod famfs;
pub mod fuse;
pub mod http;
pub mod join;
pub mod metrics;
pub mod probes;
pub mod regress;
pub mod server;
pub mod top;
pub mod util;
