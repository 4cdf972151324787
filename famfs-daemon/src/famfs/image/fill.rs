//! Crash-honest file creation with contents ([`Image::creat_from`], what `image cp` uses): allocate,
//! write the data through the new extents, make it durable, and only then append the FILE entry.
//!
//! A crash (kill -9, power loss) or a failing source at any point before the append leaves no entry:
//! the space stays free in the log's view and no file is visible, so no file can show the device's
//! previous (stale) contents or a half-copied body. Once the entry is appended, the data is already
//! durable. Owns the order of those steps. Must not decide placement (that is `alloc`) or encode
//! entries (that is `format`).

use super::{Image, ImageError, norm_path, path_str};
use crate::famfs::{
    alloc::StripeSpec,
    format::{EntryBody, Fmap},
    replay::entry_ino,
};

/// Bytes copied per step.
const FILL_CHUNK: u64 = 4 << 20;
/// Page size whose tail after the end of the file is zeroed (what a mapping of the last page shows).
const PAGE: u64 = 4096;

impl Image {
    /// Create a file of `size` bytes whose contents come from `fill(off, buf)` (fill `buf` with the
    /// file's bytes at `off`), crash-honestly: the space is placed as [`Image::creat`] places it, the
    /// bytes are written through the new extents (plus zeros to the end of the last 4 KiB page) and
    /// flushed, and only then is the entry appended. All of it under the exclusive log lock. An error
    /// from `fill` ([`ImageError::Source`]) appends nothing. Returns the inode id.
    #[allow(clippy::too_many_arguments)] // the creat arguments plus the data source
    pub fn creat_from(
        &mut self,
        path: &str,
        size: u64,
        mode: u32,
        uid: u32,
        gid: u32,
        stripe: Option<StripeSpec>,
        fill: &mut dyn FnMut(u64, &mut [u8]) -> std::io::Result<()>,
    ) -> Result<u64, ImageError> {
        if !self.store.is_writable() {
            return Err(ImageError::ReadOnly);
        }
        let p = norm_path(path)?;
        let _lock = self.prepare_append()?;
        self.check_new_name(path, p)?;
        let fmap = self.place(size, stripe)?;
        let entry = self.file_entry(p, size, mode, uid, gid, &fmap)?;
        self.fill_extents(p, &fmap, size, fill)?;
        self.append_and_play(p, &[EntryBody::File(entry)])
    }

    /// Write the file's bytes (then the zero page tail) through `fmap`, then flush every extent.
    fn fill_extents(
        &mut self,
        p: &[u8],
        fmap: &Fmap,
        size: u64,
        fill: &mut dyn FnMut(u64, &mut [u8]) -> std::io::Result<()>,
    ) -> Result<(), ImageError> {
        let mapped = u64::try_from(fmap.total_len()).unwrap_or(u64::MAX);
        let mut buf = vec![0u8; size.min(FILL_CHUNK) as usize];
        let mut off = 0u64;
        while off < size {
            let n = (size - off).min(FILL_CHUNK) as usize;
            fill(off, &mut buf[..n]).map_err(|source| ImageError::Source {
                path: path_str(p),
                off,
                source,
            })?;
            self.write_mapped(fmap, mapped, off, &buf[..n])?;
            off += n as u64;
        }
        let tail = size.next_multiple_of(PAGE).min(mapped) - size.min(mapped);
        if tail > 0 {
            buf.clear();
            buf.resize(tail as usize, 0);
            self.write_mapped(fmap, mapped, size, &buf)?;
        }
        for e in fmap.extents() {
            self.store.flush(e.offset, e.len)?;
        }
        Ok(())
    }

    /// Write `data` at file offset `off` of a mapping of `mapped` bytes (not flushed).
    fn write_mapped(
        &mut self,
        fmap: &Fmap,
        mapped: u64,
        off: u64,
        data: &[u8],
    ) -> Result<(), ImageError> {
        let mut done = 0usize;
        while done < data.len() {
            let fo = off + done as u64;
            let (dev, avail) = fmap.resolve(fo, mapped).ok_or(ImageError::Unmapped {
                id: entry_ino(self.ns.next_index()),
                off: fo,
            })?;
            let n = avail.min((data.len() - done) as u64) as usize;
            self.store.write_at(dev, &data[done..done + n])?;
            done += n;
        }
        Ok(())
    }
}
