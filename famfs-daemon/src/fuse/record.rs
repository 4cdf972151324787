//! What the FUSE server reports for every request it answers: one [`RequestRecord`] per request,
//! produced by the session's workers and consumed by later stages (the join) through a bounded sink.
//!
//! Owns the record's fields and their meaning. Must not know who consumes records (the join, the
//! metrics) or import anything from those later stages: they import this type.

/// What the FUSE server reports for every request it answers (one per request, `Copy`, no heap).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RequestRecord {
    pub mount_epoch: u64,
    pub connection: u32,
    pub unique: u64,
    pub opcode: u32,
    pub nodeid: u64,
    /// The requesting task (the request header's pid: the kernel puts the calling thread's id there; 0
    /// for requests the kernel makes on no task's behalf).
    pub pid: u32,
    pub reply_bytes: u32,
    pub error: i32,
    /// GET_FMAP: serialized fmap size (0 for other opcodes or when only the needed size was sent).
    pub fmap_bytes: u32,
    pub fmap_extents: u32,
    /// GET_FMAP: the kernel's buffer was too small; a needed-size reply was sent (a retry follows).
    pub retry: bool,
    /// READ/WRITE: data bytes transferred.
    pub io_bytes: u32,
    pub recv_ns: u64,
    pub reply_ns: u64,
}
