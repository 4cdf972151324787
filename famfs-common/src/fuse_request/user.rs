//! User-space impls for the fuse_request shapes: `aya::Pod` so they can be map keys and values.

use super::{Inflight, InflightKey, ReqKey, ReqStats};

// SAFETY: all four are #[repr(C)], Copy, made only of integers and integer arrays with no implicit padding,
// so every bit pattern is a valid value.
unsafe impl aya::Pod for ReqKey {}
// SAFETY: see above.
unsafe impl aya::Pod for ReqStats {}
// SAFETY: see above.
unsafe impl aya::Pod for InflightKey {}
// SAFETY: see above.
unsafe impl aya::Pod for Inflight {}
// SAFETY: #[repr(C)] struct of eight u32 fields, no padding, every bit pattern valid.
unsafe impl aya::Pod for super::TpOffsets {}
