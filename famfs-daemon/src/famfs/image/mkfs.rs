//! mkfs: create a famfs filesystem on an image file (created or resized) or a device, refusing to
//! overwrite an existing famfs filesystem (or another host's) unless forced.
//!
//! Owns: [`MkfsOptions`], the mkfs checks (size, version, log length) and the order of the writes
//! (zeroed log and its header flushed before the superblock). Must not append log entries.

use std::{
    fs::OpenOptions,
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
};

use super::{Image, ImageError, ImageOptions};
use crate::famfs::{
    format::{
        ALLOC_UNIT, CURRENT_VERSION, DEFAULT_LOG_LEN, FormatError, LOG_OFFSET, LogHeader,
        MIN_DEV_SIZE, MIN_LOG_LEN, SB_MAGIC, SB_SIZE, Superblock, VERSION_47, VERSION_48,
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
        let file = OpenOptions::new()
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
        Image::mkfs_store(store, opts, path.as_os_str().as_encoded_bytes())
    }

    /// Create a filesystem on an open store; `dev_name` goes to `dd_daxdev` (64 bytes, bounded copy).
    pub fn mkfs_store(
        store: Store,
        opts: &MkfsOptions,
        dev_name: &[u8],
    ) -> Result<Image, ImageError> {
        let pstr = store.path().display().to_string();
        let size = store.len();
        if size < opts.min_size {
            return Err(ImageError::TooSmall {
                path: pstr,
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
        if LOG_OFFSET + opts.log_len + ALLOC_UNIT > size {
            return Err(ImageError::Mkfs(format!(
                "a log of {:#x} bytes leaves no data space on {size:#x} bytes",
                opts.log_len
            )));
        }
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
        store.zero_range(LOG_OFFSET, opts.log_len)?;
        store.write_at(LOG_OFFSET, &LogHeader::new(opts.log_len).encode())?;
        store.flush(LOG_OFFSET, opts.log_len)?;
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
