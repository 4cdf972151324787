//! FUSE notifications: messages the server sends the kernel unasked (unique 0, `error` = the notify
//! code) to invalidate what the kernel cached — a directory entry, or an inode's attributes and data.
//!
//! Owns the notification wire format and its single write. Must not decide when to invalidate (the
//! filesystem does, e.g. the server after a refresh from the log) and must not read from the channel.

use std::io::{self, IoSlice};

use super::{
    abi::{NotifyInvalEntryOut, NotifyInvalInodeOut, OutHeader, notify},
    channel::Channel,
};

/// Sends FUSE notifications (unique 0, `error` = notify code). Clonable; usable from any thread.
#[derive(Clone, Debug)]
pub struct Notifier {
    ch: Channel,
}

impl Notifier {
    /// A notifier writing on `ch` (the session hands one out: [`super::Session::notifier`]).
    pub(super) fn new(ch: Channel) -> Notifier {
        Notifier { ch }
    }

    /// Invalidate the dentry `name` in directory `parent`. The kernel answers ENOENT when it has no
    /// such entry cached.
    pub fn inval_entry(&self, parent: u64, name: &[u8]) -> io::Result<()> {
        let namelen = u32::try_from(name.len())
            .map_err(|_| io::Error::from_raw_os_error(libc::ENAMETOOLONG))?;
        let body = NotifyInvalEntryOut {
            parent,
            namelen,
            flags: 0,
        }
        .to_bytes();
        self.send(notify::INVAL_ENTRY, &[&body, name, &[0]])
    }

    /// Invalidate cached attributes and the data range `off..off+len` of `ino` (`len` 0 = to EOF,
    /// `off` < 0 = attributes only).
    pub fn inval_inode(&self, ino: u64, off: i64, len: i64) -> io::Result<()> {
        let body = NotifyInvalInodeOut { ino, off, len }.to_bytes();
        self.send(notify::INVAL_INODE, &[&body])
    }

    fn send(&self, code: i32, parts: &[&[u8]]) -> io::Result<()> {
        let len = OutHeader::SIZE + parts.iter().map(|p| p.len()).sum::<usize>();
        let len = u32::try_from(len).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        let head = OutHeader {
            len,
            error: code,
            unique: 0,
        }
        .to_bytes();
        let mut iov = [IoSlice::new(&[]); 4];
        iov[0] = IoSlice::new(&head);
        for (slot, p) in iov[1..].iter_mut().zip(parts) {
            *slot = IoSlice::new(p);
        }
        let n = self.ch.send(&iov[..1 + parts.len().min(3)])?;
        if n != len as usize {
            return Err(io::Error::other(format!(
                "notification: wrote {n} of {len} bytes"
            )));
        }
        Ok(())
    }
}
