//! mkfs: create a famfs filesystem on an image file (created or resized) or a device, refusing to
//! overwrite an existing famfs filesystem (or another host's) unless forced.
//!
//! Owns: [`MkfsOptions`], the mkfs checks (size, version, log length) and the order of the writes
//! (zeroed log and its header flushed before the superblock). Time and memory do not grow with the
//! log length on image files and block devices (the log is zeroed through the fd, only where data
//! is). Must not append log entries.

use std::{
    fs::{File, OpenOptions},
    io::{Seek, SeekFrom},
    os::{
        fd::AsRawFd,
        unix::fs::{FileExt, FileTypeExt},
    },
    path::{Path, PathBuf},
};

use super::{Image, ImageError, ImageOptions};
use crate::famfs::{
    format::{
        ALLOC_UNIT, CURRENT_VERSION, DEFAULT_LOG_LEN, FormatError, LOG_HEADER_SIZE, LOG_OFFSET,
        LogHeader, MIN_DEV_SIZE, MIN_LOG_LEN, SB_MAGIC, SB_SIZE, Superblock, VERSION_47,
        VERSION_48,
    },
    role,
    store::{Store, StoreError},
};

/// How to create a filesystem.
#[derive(Clone, Debug)]
pub struct MkfsOptions {
    /// Size of a regular image file (created or resized); must be absent or equal for devices.
    pub size: Option<u64>,
    /// Log length: a power of 2, at least 8 MiB.
    pub log_len: u64,
    /// Overwrite an existing famfs filesystem (or another host's).
    pub force: bool,
    /// 48 (default) or 47.
    pub version: u64,
    /// Host UUID file; created with a random UUID if missing.
    pub system_uuid_path: Option<PathBuf>,
    /// Use this host UUID instead of the file.
    pub host_uuid: Option<[u8; 16]>,
    /// Minimum device size (4 GiB; tests of in-memory images lower it).
    pub min_size: u64,
    /// Fixed filesystem / device UUIDs (default random).
    pub uuid: Option<[u8; 16]>,
    pub dev_uuid: Option<[u8; 16]>,
}

impl Default for MkfsOptions {
    fn default() -> Self {
        MkfsOptions {
            size: None,
            log_len: DEFAULT_LOG_LEN,
            force: false,
            version: CURRENT_VERSION,
            system_uuid_path: None,
            host_uuid: None,
            min_size: MIN_DEV_SIZE,
            uuid: None,
            dev_uuid: None,
        }
    }
}

impl Image {
    /// Create a filesystem on a regular file (created or resized to `opts.size`) or a device.
    ///
    /// The log region is zeroed through the file descriptor before the store is opened: on a regular
    /// file only the parts that hold data are zeroed (`SEEK_DATA`/`SEEK_HOLE`, then
    /// `FALLOC_FL_ZERO_RANGE` or writes), on a block device with `BLKZEROOUT`, so a huge log on a
    /// sparse image costs neither time nor memory (never a pass over every page of the log).
    pub fn mkfs(path: impl AsRef<Path>, opts: &MkfsOptions) -> Result<Image, ImageError> {
        let path = path.as_ref();
        let pstr = path.display().to_string();
        let io = |op: &'static str| {
            let p = pstr.clone();
            move |source| {
                ImageError::Store(StoreError::Io {
                    path: p,
                    op,
                    source,
                })
            }
        };
        let exists = path.exists();
        if !exists && opts.size.is_none() {
            return Err(ImageError::Mkfs(format!(
                "{pstr} does not exist; give --size to create an image file"
            )));
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(!exists)
            .truncate(false)
            .open(path)
            .map_err(io("open"))?;
        let ft = file.metadata().map_err(io("fstat"))?.file_type();
        if exists {
            let mut head = [0u8; SB_SIZE];
            let n = read_full_at(&file, &mut head).map_err(io("read superblock"))?;
            if n == SB_SIZE {
                check_existing(&pstr, &head, opts)?;
            }
        }
        if let Some(size) = opts.size
            && ft.is_file()
        {
            file.set_len(size).map_err(io("set length"))?;
        }
        let by_fd = if ft.is_file() {
            Some(file.metadata().map_err(io("fstat"))?.len())
        } else if ft.is_block_device() {
            Some(file.seek(SeekFrom::End(0)).map_err(io("seek to end"))?)
        } else {
            None
        };
        if let Some(len) = by_fd {
            if let Some(size) = opts.size
                && size != len
            {
                return Err(ImageError::Mkfs(format!(
                    "{pstr} is a device of {len:#x} bytes; --size {size:#x} does not match"
                )));
            }
            check_params(&pstr, len, opts)?;
            zero_range_fd(&file, ft.is_block_device(), LOG_OFFSET, opts.log_len)
                .map_err(io("zero the log region"))?;
            file.sync_data().map_err(io("fdatasync"))?;
        }
        // The same descriptor becomes the store: the image is opened once.
        let store = Store::from_file(path, file, true)?;
        if let Some(size) = opts.size
            && !ft.is_file()
            && size != store.len()
        {
            return Err(ImageError::Mkfs(format!(
                "{pstr} is a device of {:#x} bytes; --size {size:#x} does not match",
                store.len()
            )));
        }
        Image::mkfs_on(
            store,
            opts,
            path.as_os_str().as_encoded_bytes(),
            by_fd.is_some(),
        )
    }

    /// Create a filesystem on an open store; `dev_name` goes to `dd_daxdev` (64 bytes, bounded copy).
    /// The log region is zeroed through the store (pages already zero are not written).
    pub fn mkfs_store(
        store: Store,
        opts: &MkfsOptions,
        dev_name: &[u8],
    ) -> Result<Image, ImageError> {
        Image::mkfs_on(store, opts, dev_name, false)
    }

    /// `log_zeroed`: the log region is already zero and durable (zeroed through the fd).
    fn mkfs_on(
        store: Store,
        opts: &MkfsOptions,
        dev_name: &[u8],
        log_zeroed: bool,
    ) -> Result<Image, ImageError> {
        let pstr = store.path().display().to_string();
        let size = store.len();
        check_params(&pstr, size, opts)?;
        if store.len() >= SB_SIZE as u64 {
            let head = store.read_array::<SB_SIZE>(0)?;
            check_existing(&pstr, &head, opts)?;
        }
        let host = match opts.host_uuid {
            Some(h) => h,
            None => role::host_uuid_or_create(&role::system_uuid_path(
                opts.system_uuid_path.as_deref(),
            ))?,
        };
        let rnd = || {
            role::random_uuid().map_err(|source| {
                ImageError::Store(StoreError::Io {
                    path: "/dev/urandom".into(),
                    op: "read",
                    source,
                })
            })
        };
        let uuid = match opts.uuid {
            Some(u) => u,
            None => rnd()?,
        };
        let dev_uuid = match opts.dev_uuid {
            Some(u) => u,
            None => rnd()?,
        };
        let mut sb = Superblock::new(
            opts.version,
            opts.log_len,
            size,
            uuid,
            dev_uuid,
            host,
            dev_name,
        );
        // mkfs does not set sb_flags or dd_uuid: keep what the device holds.
        let old = Superblock::parse(&store.read_array::<SB_SIZE>(0)?);
        sb.sb_flags = old.sb_flags;
        sb.dd_uuid = old.dd_uuid;
        // Log: zero the whole region (without un-sparsing), header, flush; then the superblock.
        let flushed = if log_zeroed {
            LOG_HEADER_SIZE as u64
        } else {
            store.zero_range(LOG_OFFSET, opts.log_len)?;
            opts.log_len
        };
        store.write_at(LOG_OFFSET, &LogHeader::new(opts.log_len).encode())?;
        store.flush(LOG_OFFSET, flushed)?;
        store.write_at(0, &sb.encode())?;
        store.flush(0, SB_SIZE as u64)?;
        Image::from_store(
            store,
            &ImageOptions {
                writable: true,
                system_uuid_path: opts.system_uuid_path.clone(),
                host_uuid: Some(host),
            },
        )
    }
}

/// The mkfs parameter checks for a device of `size` bytes: minimum size, version, log length (a power
/// of 2 of at least 8 MiB, as the reference; no upper limit: a huge log costs nothing until used), and
/// room for at least one data unit.
fn check_params(pstr: &str, size: u64, opts: &MkfsOptions) -> Result<(), ImageError> {
    if size < opts.min_size {
        return Err(ImageError::TooSmall {
            path: pstr.to_string(),
            size,
            min: opts.min_size,
        });
    }
    if opts.version != VERSION_47 && opts.version != VERSION_48 {
        return Err(ImageError::Mkfs(format!(
            "version {} (this tool writes 47 or 48)",
            opts.version
        )));
    }
    if !opts.log_len.is_power_of_two() || opts.log_len < MIN_LOG_LEN {
        return Err(ImageError::Mkfs(format!(
            "log length {:#x} must be a power of 2 of at least {MIN_LOG_LEN:#x}",
            opts.log_len
        )));
    }
    let data = LOG_OFFSET
        .checked_add(opts.log_len)
        .and_then(|e| e.checked_add(ALLOC_UNIT));
    if data.is_none_or(|d| d > size) {
        return Err(ImageError::Mkfs(format!(
            "a log of {:#x} bytes leaves no data space on {size:#x} bytes",
            opts.log_len
        )));
    }
    Ok(())
}

/// `BLKZEROOUT` (`_IO(0x12, 127)`): zero a byte range of a block device (`[start, len]` as two u64).
const BLKZEROOUT: libc::c_ulong = 0x127f;

/// Make `[off, off + len)` of `file` read as zeros. Regular files: only the data segments inside the
/// range are touched (`FALLOC_FL_ZERO_RANGE`, else zero writes), holes already read as zeros. Block
/// devices: `BLKZEROOUT`, else zero writes. Not synced.
fn zero_range_fd(file: &File, block: bool, off: u64, len: u64) -> std::io::Result<()> {
    let end = off.saturating_add(len);
    if block {
        let range = [off, len];
        // SAFETY: BLKZEROOUT reads two u64 from the pointer, which points at `range` (alive for the
        // call); the fd is ours.
        if unsafe { libc::ioctl(file.as_raw_fd(), BLKZEROOUT, range.as_ptr()) } == 0 {
            return Ok(());
        }
        return write_zeros(file, off, end);
    }
    let mut pos = off;
    while pos < end {
        let Some(data) = seek(file, pos, libc::SEEK_DATA)? else {
            return Ok(());
        };
        if data >= end {
            return Ok(());
        }
        let hole = seek(file, data, libc::SEEK_HOLE)?.unwrap_or(end).min(end);
        zero_segment(file, data, hole)?;
        pos = hole;
    }
    Ok(())
}

/// `lseek(fd, pos, whence)`; `None` for ENXIO (no data at or after `pos`). A filesystem without
/// SEEK_DATA support treats the whole file as data, which is still correct (it is then all written).
fn seek(file: &File, pos: u64, whence: libc::c_int) -> std::io::Result<Option<u64>> {
    let p = libc::off_t::try_from(pos).map_err(std::io::Error::other)?;
    // SAFETY: lseek on a descriptor we own; no memory is passed.
    let r = unsafe { libc::lseek(file.as_raw_fd(), p, whence) };
    if r >= 0 {
        return Ok(Some(r as u64));
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::ENXIO) => Ok(None),
        Some(libc::EINVAL) if whence == libc::SEEK_DATA => Ok(Some(pos)),
        Some(libc::EINVAL) => Ok(None),
        _ => Err(e),
    }
}

fn zero_segment(file: &File, start: u64, end: u64) -> std::io::Result<()> {
    let (Ok(s), Ok(l)) = (
        libc::off_t::try_from(start),
        libc::off_t::try_from(end - start),
    ) else {
        return write_zeros(file, start, end);
    };
    // SAFETY: fallocate on a descriptor we own; no memory is passed.
    let r = unsafe {
        libc::fallocate(
            file.as_raw_fd(),
            libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE,
            s,
            l,
        )
    };
    if r == 0 {
        return Ok(());
    }
    write_zeros(file, start, end)
}

fn write_zeros(file: &File, start: u64, end: u64) -> std::io::Result<()> {
    let zeros = vec![0u8; 1 << 20];
    let mut pos = start;
    while pos < end {
        let n = (end - pos).min(zeros.len() as u64) as usize;
        file.write_all_at(&zeros[..n], pos)?;
        pos += n as u64;
    }
    Ok(())
}

fn read_full_at(f: &std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read_at(&mut buf[n..], n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Refuse (without force) to overwrite a valid or wrong-version famfs superblock, or another host's.
fn check_existing(path: &str, head: &[u8; SB_SIZE], opts: &MkfsOptions) -> Result<(), ImageError> {
    if opts.force {
        return Ok(());
    }
    let raw = Superblock::parse(head);
    if raw.magic != SB_MAGIC {
        return Ok(());
    }
    let detail = match Superblock::decode(head) {
        Ok(sb) => {
            let host = opts
                .host_uuid
                .or_else(|| role::host_uuid_for_role(opts.system_uuid_path.as_deref()));
            let r = role::role_for(&sb.system_uuid, host.as_ref());
            format!(
                "version {}, uuid {}, this host is its {}",
                sb.version,
                sb.fs_uuid_string(),
                r.as_str()
            )
        }
        Err(e @ FormatError::SbVersion { .. }) => e.to_string(),
        Err(_) => return Ok(()),
    };
    Err(ImageError::AlreadyFamfs {
        path: path.to_string(),
        detail,
    })
}
