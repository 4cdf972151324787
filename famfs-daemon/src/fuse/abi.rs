//! FUSE wire ABI: `#[repr(C)]` structs as the kernel's `include/uapi/linux/fuse.h` lays them out (plus
//! the famfs GET_FMAP / GET_DAXDEV reply structs from the famfs series), opcode numbers, INIT flag bits
//! and the other protocol constants.
//!
//! Every struct is declared with each field's byte offset; compile-time asserts check the offsets, the
//! total size and that the fields tile the struct without implicit padding. Decoding is explicit and
//! checked (`decode` names the opcode, the struct, the field and the byte offset when a body is short);
//! encoding writes every field at its offset into a caller-owned array and writes zeros for padding.
//! All integers are in the host's byte order, as the FUSE ABI is.
//!
//! Owns only layouts and numbers: no I/O, no policy (negotiation lives in `session`, dialect numbers in
//! `dialect`).

use std::fmt;

/// The protocol major version this layer speaks.
pub const KERNEL_VERSION: u32 = 7;
/// The protocol minor version this layer announces in its INIT reply (Linux 6.18 speaks 7.45). Both
/// sides use the lower of the two minors.
pub const KERNEL_MINOR_VERSION: u32 = 45;
/// Oldest kernel minor served: below 12 the entry/attr replies had other sizes.
pub const MIN_KERNEL_MINOR: u32 = 12;
/// The kernel refuses `read()` buffers smaller than this (or than `80 + max_write`).
pub const MIN_READ_BUFFER: usize = 8192;
/// INIT reply size for kernels whose minor is below 23.
pub const COMPAT_22_INIT_OUT_SIZE: usize = 24;
/// Root directory's node id.
pub const ROOT_ID: u64 = 1;
/// `_IOR(229, 0, uint32_t)`: attach a new `/dev/fuse` fd to the connection of the fd passed as argument.
pub const FUSE_DEV_IOC_CLONE: u32 = ioc_read(229, 0, 4);

/// `_IOR(type, nr, size)` on x86_64/aarch64 (`dir` = read = 2 in bits 30..31).
const fn ioc_read(ty: u32, nr: u32, size: u32) -> u32 {
    (2 << 30) | (size << 16) | (ty << 8) | nr
}

/// Opcode numbers: owned by `famfs_common::opcode` (shared with the eBPF programs). The famfs opcodes
/// overlap 53..55 and are numbered by dialect (see `dialect`), not there.
pub use famfs_common::opcode;

/// INIT capability bits as one 64-bit set: bits 0..31 travel in `flags`, bits 32..63 in `flags2`
/// (only when `INIT_EXT` is set).
pub mod init_flags {
    pub const ASYNC_READ: u64 = 1 << 0;
    pub const POSIX_LOCKS: u64 = 1 << 1;
    pub const FILE_OPS: u64 = 1 << 2;
    pub const ATOMIC_O_TRUNC: u64 = 1 << 3;
    pub const EXPORT_SUPPORT: u64 = 1 << 4;
    pub const BIG_WRITES: u64 = 1 << 5;
    pub const DONT_MASK: u64 = 1 << 6;
    pub const SPLICE_WRITE: u64 = 1 << 7;
    pub const SPLICE_MOVE: u64 = 1 << 8;
    pub const SPLICE_READ: u64 = 1 << 9;
    pub const FLOCK_LOCKS: u64 = 1 << 10;
    pub const HAS_IOCTL_DIR: u64 = 1 << 11;
    pub const AUTO_INVAL_DATA: u64 = 1 << 12;
    pub const DO_READDIRPLUS: u64 = 1 << 13;
    pub const READDIRPLUS_AUTO: u64 = 1 << 14;
    pub const ASYNC_DIO: u64 = 1 << 15;
    pub const WRITEBACK_CACHE: u64 = 1 << 16;
    pub const NO_OPEN_SUPPORT: u64 = 1 << 17;
    pub const PARALLEL_DIROPS: u64 = 1 << 18;
    pub const HANDLE_KILLPRIV: u64 = 1 << 19;
    pub const POSIX_ACL: u64 = 1 << 20;
    pub const ABORT_ERROR: u64 = 1 << 21;
    pub const MAX_PAGES: u64 = 1 << 22;
    pub const CACHE_SYMLINKS: u64 = 1 << 23;
    pub const NO_OPENDIR_SUPPORT: u64 = 1 << 24;
    pub const EXPLICIT_INVAL_DATA: u64 = 1 << 25;
    pub const MAP_ALIGNMENT: u64 = 1 << 26;
    pub const SUBMOUNTS: u64 = 1 << 27;
    pub const HANDLE_KILLPRIV_V2: u64 = 1 << 28;
    pub const SETXATTR_EXT: u64 = 1 << 29;
    pub const INIT_EXT: u64 = 1 << 30;
    pub const INIT_RESERVED: u64 = 1 << 31;
    pub const SECURITY_CTX: u64 = 1 << 32;
    pub const HAS_INODE_DAX: u64 = 1 << 33;
    pub const CREATE_SUPP_GROUP: u64 = 1 << 34;
    pub const HAS_EXPIRE_ONLY: u64 = 1 << 35;
    pub const DIRECT_IO_ALLOW_MMAP: u64 = 1 << 36;
    pub const PASSTHROUGH: u64 = 1 << 37;
    pub const NO_EXPORT_SUPPORT: u64 = 1 << 38;
    pub const HAS_RESEND: u64 = 1 << 39;
    pub const ALLOW_IDMAP: u64 = 1 << 40;
    pub const OVER_IO_URING: u64 = 1 << 41;
    /// Upstream 7.43. The same bit is famfs DAX_FMAP in the RFC v1/V2 dialects.
    pub const REQUEST_TIMEOUT: u64 = 1 << 42;
    /// famfs DAX_FMAP, RFC v1/V2 (collides with REQUEST_TIMEOUT).
    pub const FAMFS_DAX_FMAP_RFC: u64 = 1 << 42;
    /// famfs DAX_FMAP, V3..V10 and later (flags2 `0x800`; collides with the proposed HAS_LOOKUP_HANDLE).
    pub const FAMFS_DAX_FMAP_V3: u64 = 1 << 43;
}

/// `fuse_open_out.open_flags`.
pub mod fopen {
    pub const DIRECT_IO: u32 = 1 << 0;
    pub const KEEP_CACHE: u32 = 1 << 1;
    pub const NONSEEKABLE: u32 = 1 << 2;
    pub const CACHE_DIR: u32 = 1 << 3;
    pub const STREAM: u32 = 1 << 4;
    pub const NOFLUSH: u32 = 1 << 5;
    pub const PARALLEL_DIRECT_WRITES: u32 = 1 << 6;
    pub const PASSTHROUGH: u32 = 1 << 7;
}

/// `fuse_setattr_in.valid` bits.
pub mod fattr {
    pub const MODE: u32 = 1 << 0;
    pub const UID: u32 = 1 << 1;
    pub const GID: u32 = 1 << 2;
    pub const SIZE: u32 = 1 << 3;
    pub const ATIME: u32 = 1 << 4;
    pub const MTIME: u32 = 1 << 5;
    pub const FH: u32 = 1 << 6;
    pub const ATIME_NOW: u32 = 1 << 7;
    pub const MTIME_NOW: u32 = 1 << 8;
    pub const LOCKOWNER: u32 = 1 << 9;
    pub const CTIME: u32 = 1 << 10;
    pub const KILL_SUIDGID: u32 = 1 << 11;
}

/// `fuse_getattr_in.getattr_flags`: `fh` is valid.
pub const GETATTR_FH: u32 = 1 << 0;
/// `fuse_release_in.release_flags`.
pub const RELEASE_FLUSH: u32 = 1 << 0;
pub const RELEASE_FLOCK_UNLOCK: u32 = 1 << 1;
/// `fuse_read_in.read_flags`: `lock_owner` is valid.
pub const READ_LOCKOWNER: u32 = 1 << 1;
/// `fuse_write_in.write_flags`.
pub const WRITE_CACHE: u32 = 1 << 0;
pub const WRITE_LOCKOWNER: u32 = 1 << 1;
pub const WRITE_KILL_SUIDGID: u32 = 1 << 2;
/// `fuse_lk_in.lk_flags`: a BSD `flock()` lock.
pub const LK_FLOCK: u32 = 1 << 0;

/// Notification codes (sent with `unique = 0`, the code in `error`).
pub mod notify {
    pub const POLL: i32 = 1;
    pub const INVAL_INODE: i32 = 2;
    pub const INVAL_ENTRY: i32 = 3;
    pub const STORE: i32 = 4;
    pub const RETRIEVE: i32 = 5;
    pub const DELETE: i32 = 6;
}

/// famfs fmap reply constants (famfs series, `fuse.h` additions).
pub mod famfs {
    /// `fmap_version` in the GET_FMAP header.
    pub const FMAP_VERSION: u16 = 1;
    pub const FILE_TYPE_REG: u8 = 0;
    pub const FILE_TYPE_SUPERBLOCK: u8 = 1;
    pub const FILE_TYPE_LOG: u8 = 2;
    pub const EXT_SIMPLE: u32 = 0;
    pub const EXT_INTERLEAVE: u32 = 1;
    /// Maximum length of a daxdev name in the GET_DAXDEV reply, NUL excluded.
    pub const DAXDEV_NAME_MAX: usize = 255;
}

/// A request body (or a part of it) was too short or malformed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeError {
    pub opcode: u32,
    /// The C struct (e.g. `fuse_read_in`) or `name` for a NUL-terminated name.
    pub what: &'static str,
    /// The field that did not fit, or what was wrong.
    pub field: &'static str,
    /// Byte offset within the request (header included) where the field starts.
    pub offset: usize,
    /// Bytes the field needs.
    pub need: usize,
    /// Bytes the request has from `offset` on.
    pub have: usize,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "opcode {}: {}.{} at byte {}: needs {} bytes, request has {}",
            self.opcode, self.what, self.field, self.offset, self.need, self.have
        )
    }
}

impl std::error::Error for DecodeError {}

/// A scalar, array or nested ABI struct that can be read from / written to its place in a buffer.
pub trait WireField: Copy {
    /// Bytes on the wire (equals `size_of::<Self>()`).
    const LEN: usize;
    /// The all-zero value.
    const ZERO: Self;
    /// Read from the first `LEN` bytes of `b` (callers check `b.len() >= LEN`).
    fn read(b: &[u8]) -> Self;
    /// Write into the first `LEN` bytes of `b` (callers check `b.len() >= LEN`).
    fn write(&self, b: &mut [u8]);
}

macro_rules! scalar_field {
    ($($t:ty),*) => {$(
        impl WireField for $t {
            const LEN: usize = ::core::mem::size_of::<$t>();
            const ZERO: Self = 0;
            #[inline]
            fn read(b: &[u8]) -> Self {
                let mut a = [0u8; ::core::mem::size_of::<$t>()];
                a.copy_from_slice(&b[..Self::LEN]);
                <$t>::from_ne_bytes(a)
            }
            #[inline]
            fn write(&self, b: &mut [u8]) {
                b[..Self::LEN].copy_from_slice(&self.to_ne_bytes());
            }
        }
    )*};
}
scalar_field!(u8, u16, u32, u64, i32, i64);

impl<const N: usize> WireField for [u8; N] {
    const LEN: usize = N;
    const ZERO: Self = [0; N];
    fn read(b: &[u8]) -> Self {
        let mut a = [0u8; N];
        a.copy_from_slice(&b[..N]);
        a
    }
    fn write(&self, b: &mut [u8]) {
        b[..N].copy_from_slice(self);
    }
}

/// Padding / unused bytes: always encoded as zeros, ignored when decoding.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(transparent)]
pub struct Pad<const N: usize>([u8; N]);

impl<const N: usize> Default for Pad<N> {
    fn default() -> Self {
        Pad([0; N])
    }
}

impl<const N: usize> fmt::Debug for Pad<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pad<{N}>")
    }
}

impl<const N: usize> WireField for Pad<N> {
    const LEN: usize = N;
    const ZERO: Self = Pad([0; N]);
    fn read(_b: &[u8]) -> Self {
        Pad([0; N])
    }
    fn write(&self, b: &mut [u8]) {
        b[..N].fill(0);
    }
}

/// Declares a `#[repr(C)]` ABI struct with per-field offsets, compile-time layout asserts, checked
/// `decode`, zero-padding `encode` and a `WireField` impl (so structs nest).
macro_rules! abi_struct {
    (
        $(#[$meta:meta])*
        $name:ident = $cname:literal, $size:literal {
            $( $(#[$fmeta:meta])* $field:ident : $ty:ty = $off:literal ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $ty, )*
        }

        const _: () = {
            assert!(::core::mem::size_of::<$name>() == $size, concat!($cname, ": size"));
            assert!(0 $(+ ::core::mem::size_of::<$ty>())* == $size, concat!($cname, ": implicit padding"));
            $( assert!(::core::mem::offset_of!($name, $field) == $off, concat!($cname, ".", stringify!($field), ": offset")); )*
        };

        impl Default for $name {
            fn default() -> Self {
                $name { $( $field: <$ty as WireField>::ZERO, )* }
            }
        }

        impl $name {
            /// Bytes on the wire.
            pub const SIZE: usize = $size;
            /// The kernel's name for this struct.
            pub const C_NAME: &'static str = $cname;

            /// Decode from the start of `buf`. `opcode` and `base` (the byte offset of `buf` within
            /// the request) only label the error.
            pub fn decode(buf: &[u8], opcode: u32, base: usize) -> Result<Self, DecodeError> {
                if buf.len() < $size {
                    $(
                        let need = <$ty as WireField>::LEN;
                        if $off + need > buf.len() {
                            return Err(DecodeError {
                                opcode,
                                what: $cname,
                                field: stringify!($field),
                                offset: base + $off,
                                need,
                                have: buf.len().saturating_sub($off),
                            });
                        }
                    )*
                }
                Ok(<Self as WireField>::read(buf))
            }

            /// Encode into `out`, every byte written (padding as zeros).
            pub fn encode(&self, out: &mut [u8; $size]) {
                <Self as WireField>::write(self, out);
            }

            /// The encoded bytes.
            pub fn to_bytes(&self) -> [u8; $size] {
                let mut out = [0u8; $size];
                self.encode(&mut out);
                out
            }
        }

        impl WireField for $name {
            const LEN: usize = $size;
            const ZERO: Self = $name { $( $field: <$ty as WireField>::ZERO, )* };
            fn read(b: &[u8]) -> Self {
                $name { $( $field: <$ty as WireField>::read(&b[$off..]), )* }
            }
            fn write(&self, b: &mut [u8]) {
                $( <$ty as WireField>::write(&self.$field, &mut b[$off..]); )*
            }
        }
    };
}

abi_struct! {
    /// Request header (`fuse_in_header`).
    InHeader = "fuse_in_header", 40 {
        len: u32 = 0,
        opcode: u32 = 4,
        unique: u64 = 8,
        nodeid: u64 = 16,
        uid: u32 = 24,
        gid: u32 = 28,
        pid: u32 = 32,
        /// Request-extension length in 8-byte units.
        total_extlen: u16 = 36,
        padding: Pad<2> = 38,
    }
}

abi_struct! {
    /// Reply / notification header (`fuse_out_header`).
    OutHeader = "fuse_out_header", 16 {
        len: u32 = 0,
        /// 0 or -errno; for a notification (`unique == 0`) the notify code.
        error: i32 = 4,
        unique: u64 = 8,
    }
}

abi_struct! {
    /// INIT request body (`fuse_init_in`). Kernels before 7.36 send only the first 16 bytes.
    InitIn = "fuse_init_in", 64 {
        major: u32 = 0,
        minor: u32 = 4,
        max_readahead: u32 = 8,
        flags: u32 = 12,
        flags2: u32 = 16,
        unused: Pad<44> = 20,
    }
}

abi_struct! {
    /// INIT reply body (`fuse_init_out`); only the first 24 bytes for kernel minor < 23.
    InitOut = "fuse_init_out", 64 {
        major: u32 = 0,
        minor: u32 = 4,
        max_readahead: u32 = 8,
        flags: u32 = 12,
        max_background: u16 = 16,
        congestion_threshold: u16 = 18,
        max_write: u32 = 20,
        time_gran: u32 = 24,
        max_pages: u16 = 28,
        map_alignment: u16 = 30,
        flags2: u32 = 32,
        max_stack_depth: u32 = 36,
        request_timeout: u16 = 40,
        unused: Pad<22> = 42,
    }
}

abi_struct! {
    /// File attributes (`fuse_attr`).
    Attr = "fuse_attr", 88 {
        ino: u64 = 0,
        size: u64 = 8,
        blocks: u64 = 16,
        atime: u64 = 24,
        mtime: u64 = 32,
        ctime: u64 = 40,
        atimensec: u32 = 48,
        mtimensec: u32 = 52,
        ctimensec: u32 = 56,
        mode: u32 = 60,
        nlink: u32 = 64,
        uid: u32 = 68,
        gid: u32 = 72,
        rdev: u32 = 76,
        blksize: u32 = 80,
        flags: u32 = 84,
    }
}

abi_struct! {
    /// LOOKUP reply (`fuse_entry_out`); also the head of each READDIRPLUS entry.
    EntryOut = "fuse_entry_out", 128 {
        nodeid: u64 = 0,
        generation: u64 = 8,
        entry_valid: u64 = 16,
        attr_valid: u64 = 24,
        entry_valid_nsec: u32 = 32,
        attr_valid_nsec: u32 = 36,
        attr: Attr = 40,
    }
}

abi_struct! {
    /// GETATTR / SETATTR reply (`fuse_attr_out`).
    AttrOut = "fuse_attr_out", 104 {
        attr_valid: u64 = 0,
        attr_valid_nsec: u32 = 8,
        dummy: Pad<4> = 12,
        attr: Attr = 16,
    }
}

abi_struct! {
    /// GETATTR request body (`fuse_getattr_in`).
    GetattrIn = "fuse_getattr_in", 16 {
        /// `GETATTR_FH`: `fh` is valid.
        getattr_flags: u32 = 0,
        dummy: Pad<4> = 4,
        fh: u64 = 8,
    }
}

abi_struct! {
    /// SETATTR request body (`fuse_setattr_in`); `valid` holds `fattr::*` bits.
    SetattrIn = "fuse_setattr_in", 88 {
        valid: u32 = 0,
        padding: Pad<4> = 4,
        fh: u64 = 8,
        size: u64 = 16,
        lock_owner: u64 = 24,
        atime: u64 = 32,
        mtime: u64 = 40,
        ctime: u64 = 48,
        atimensec: u32 = 56,
        mtimensec: u32 = 60,
        ctimensec: u32 = 64,
        mode: u32 = 68,
        unused4: Pad<4> = 72,
        uid: u32 = 76,
        gid: u32 = 80,
        unused5: Pad<4> = 84,
    }
}

abi_struct! {
    /// OPEN / OPENDIR request body (`fuse_open_in`).
    OpenIn = "fuse_open_in", 8 {
        flags: u32 = 0,
        open_flags: u32 = 4,
    }
}

abi_struct! {
    /// OPEN / OPENDIR reply (`fuse_open_out`); `open_flags` holds `fopen::*` bits.
    OpenOut = "fuse_open_out", 16 {
        fh: u64 = 0,
        open_flags: u32 = 8,
        backing_id: i32 = 12,
    }
}

abi_struct! {
    /// READ / READDIR / READDIRPLUS request body (`fuse_read_in`).
    ReadIn = "fuse_read_in", 40 {
        fh: u64 = 0,
        offset: u64 = 8,
        size: u32 = 16,
        read_flags: u32 = 20,
        lock_owner: u64 = 24,
        flags: u32 = 32,
        padding: Pad<4> = 36,
    }
}

abi_struct! {
    /// WRITE request body (`fuse_write_in`), followed by the data.
    WriteIn = "fuse_write_in", 40 {
        fh: u64 = 0,
        offset: u64 = 8,
        size: u32 = 16,
        write_flags: u32 = 20,
        lock_owner: u64 = 24,
        flags: u32 = 32,
        padding: Pad<4> = 36,
    }
}

abi_struct! {
    /// WRITE reply (`fuse_write_out`).
    WriteOut = "fuse_write_out", 8 {
        size: u32 = 0,
        padding: Pad<4> = 4,
    }
}

abi_struct! {
    /// RELEASE / RELEASEDIR request body (`fuse_release_in`).
    ReleaseIn = "fuse_release_in", 24 {
        fh: u64 = 0,
        flags: u32 = 8,
        release_flags: u32 = 12,
        lock_owner: u64 = 16,
    }
}

abi_struct! {
    /// FLUSH request body (`fuse_flush_in`).
    FlushIn = "fuse_flush_in", 24 {
        fh: u64 = 0,
        unused: Pad<4> = 8,
        padding: Pad<4> = 12,
        lock_owner: u64 = 16,
    }
}

abi_struct! {
    /// FSYNC / FSYNCDIR request body (`fuse_fsync_in`); `fsync_flags` bit 0 = datasync.
    FsyncIn = "fuse_fsync_in", 16 {
        fh: u64 = 0,
        fsync_flags: u32 = 8,
        padding: Pad<4> = 12,
    }
}

abi_struct! {
    /// FORGET request body (`fuse_forget_in`).
    ForgetIn = "fuse_forget_in", 8 {
        nlookup: u64 = 0,
    }
}

abi_struct! {
    /// One entry of a BATCH_FORGET body (`fuse_forget_one`).
    ForgetOne = "fuse_forget_one", 16 {
        nodeid: u64 = 0,
        nlookup: u64 = 8,
    }
}

abi_struct! {
    /// BATCH_FORGET request head (`fuse_batch_forget_in`), followed by `count` × `ForgetOne`.
    BatchForgetIn = "fuse_batch_forget_in", 8 {
        count: u32 = 0,
        dummy: Pad<4> = 4,
    }
}

abi_struct! {
    /// STATFS reply (`fuse_kstatfs`, the whole of `fuse_statfs_out`).
    Kstatfs = "fuse_kstatfs", 80 {
        blocks: u64 = 0,
        bfree: u64 = 8,
        bavail: u64 = 16,
        files: u64 = 24,
        ffree: u64 = 32,
        bsize: u32 = 40,
        namelen: u32 = 44,
        frsize: u32 = 48,
        padding: Pad<4> = 52,
        spare: Pad<24> = 56,
    }
}

abi_struct! {
    /// GETXATTR / LISTXATTR request head (`fuse_getxattr_in`); a NUL-terminated name follows.
    GetxattrIn = "fuse_getxattr_in", 8 {
        size: u32 = 0,
        padding: Pad<4> = 4,
    }
}

abi_struct! {
    /// GETXATTR reply to a size probe (`size == 0`): the value's length (`fuse_getxattr_out`).
    GetxattrOut = "fuse_getxattr_out", 8 {
        size: u32 = 0,
        padding: Pad<4> = 4,
    }
}

abi_struct! {
    /// INTERRUPT request body (`fuse_interrupt_in`).
    InterruptIn = "fuse_interrupt_in", 8 {
        unique: u64 = 0,
    }
}

abi_struct! {
    /// A POSIX / flock lock (`fuse_file_lock`).
    FileLock = "fuse_file_lock", 24 {
        start: u64 = 0,
        end: u64 = 8,
        typ: u32 = 16,
        pid: u32 = 20,
    }
}

abi_struct! {
    /// GETLK / SETLK / SETLKW request body (`fuse_lk_in`); `lk_flags` bit 0 = flock.
    LkIn = "fuse_lk_in", 48 {
        fh: u64 = 0,
        owner: u64 = 8,
        lk: FileLock = 16,
        lk_flags: u32 = 40,
        padding: Pad<4> = 44,
    }
}

abi_struct! {
    /// Fixed head of a READDIR entry (`fuse_dirent` without its name): the name follows, then zeros up
    /// to the next multiple of 8.
    DirentHead = "fuse_dirent", 24 {
        ino: u64 = 0,
        /// Offset of the *next* entry (what the kernel passes back to continue).
        off: u64 = 8,
        namelen: u32 = 16,
        /// `DT_*` type (mode >> 12).
        typ: u32 = 20,
    }
}

abi_struct! {
    /// Notification body for `notify::INVAL_INODE` (`fuse_notify_inval_inode_out`).
    NotifyInvalInodeOut = "fuse_notify_inval_inode_out", 24 {
        ino: u64 = 0,
        off: i64 = 8,
        len: i64 = 16,
    }
}

abi_struct! {
    /// Notification head for `notify::INVAL_ENTRY` (`fuse_notify_inval_entry_out`); the name and a NUL
    /// follow.
    NotifyInvalEntryOut = "fuse_notify_inval_entry_out", 16 {
        parent: u64 = 0,
        namelen: u32 = 8,
        flags: u32 = 12,
    }
}

abi_struct! {
    /// famfs GET_FMAP request body (RFC V2 and post-V10): the kernel's reply buffer size.
    GetFmapIn = "fuse_get_fmap_in", 8 {
        size: u32 = 0,
        padding: Pad<4> = 4,
    }
}

abi_struct! {
    /// famfs GET_FMAP reply header (`fuse_famfs_fmap_header`).
    FmapHeader = "fuse_famfs_fmap_header", 32 {
        file_type: u8 = 0,
        reserved: Pad<1> = 1,
        fmap_version: u16 = 2,
        ext_type: u32 = 4,
        nextents: u32 = 8,
        reserved0: Pad<4> = 12,
        file_size: u64 = 16,
        reserved1: Pad<8> = 24,
    }
}

abi_struct! {
    /// famfs simple extent (`fuse_famfs_simple_ext`), also each strip of an interleaved extent.
    FmapSimpleExt = "fuse_famfs_simple_ext", 24 {
        se_devindex: u32 = 0,
        reserved: Pad<4> = 4,
        se_offset: u64 = 8,
        se_len: u64 = 16,
    }
}

abi_struct! {
    /// famfs interleaved extent head (`fuse_famfs_iext`); `ie_nstrips` simple extents follow.
    FmapInterleavedExt = "fuse_famfs_iext", 24 {
        ie_nstrips: u32 = 0,
        ie_chunk_size: u32 = 4,
        ie_nbytes: u64 = 8,
        reserved: Pad<8> = 16,
    }
}

abi_struct! {
    /// famfs GET_DAXDEV reply (`fuse_daxdev_out`): the devdax path, NUL-terminated.
    DaxdevOut = "fuse_daxdev_out", 280 {
        index: u16 = 0,
        reserved: Pad<2> = 2,
        reserved2: Pad<4> = 4,
        reserved3: Pad<8> = 8,
        reserved4: Pad<8> = 16,
        name: [u8; 256] = 24,
    }
}

/// Bytes of one READDIR entry with a `namelen`-byte name: 24 + name, rounded up to 8.
pub const fn dirent_size(namelen: usize) -> usize {
    (DirentHead::SIZE + namelen + 7) & !7
}

/// Bytes of one READDIRPLUS entry: 128-byte entry + dirent, rounded up to 8.
pub const fn direntplus_size(namelen: usize) -> usize {
    EntryOut::SIZE + dirent_size(namelen)
}

/// The NUL-terminated name at the start of `buf` (without the NUL). `base` is `buf`'s byte offset in
/// the request, for the error.
pub fn c_name(buf: &[u8], opcode: u32, base: usize) -> Result<&[u8], DecodeError> {
    match buf.iter().position(|&b| b == 0) {
        Some(n) => Ok(&buf[..n]),
        None => Err(DecodeError {
            opcode,
            what: "name",
            field: "NUL terminator",
            offset: base,
            need: buf.len() + 1,
            have: buf.len(),
        }),
    }
}
