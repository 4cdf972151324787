//! User-space impls: `aya::Pod` so the shared shapes can be map keys, values and globals.

use crate::{event, fault, kfunc};

use crate::fuse_request::{Inflight, ReqKey, ReqOffsets, ReqStats, TpOffsets, WatchList};

macro_rules! pod {
    ($($t:ty),* $(,)?) => {$(
        // SAFETY: #[repr(C)], Copy, built only from integers and integer arrays with explicit padding
        // fields, so every bit pattern is a valid value and there are no uninitialised bytes.
        unsafe impl aya::Pod for $t {}
    )*};
}

pod!(
    ReqKey,
    ReqStats,
    Inflight,
    WatchList,
    TpOffsets,
    ReqOffsets,
    fault::FaultKey,
    fault::FaultStats,
    fault::FaultStart,
    fault::FileKey,
    fault::ProcFaultKey,
    fault::ProcFaultStats,
    fault::DaxOffsets,
    fault::FilemapOffsets,
    kfunc::FnStats,
    kfunc::FnStartKey,
    event::Event,
);
