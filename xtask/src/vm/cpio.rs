//! A newc ("070701") cpio archive written in memory: directories (parents created on demand), regular
//! files, symlinks and the trailer, padded to 512 bytes. Owns the archive format only; what goes into the
//! initramfs is `initramfs`'s business.

use std::collections::HashSet;

use anyhow::{Context, Result};

/// A newc cpio archive built in memory.
#[derive(Default)]
pub(super) struct Cpio {
    buf: Vec<u8>,
    ino: u32,
    dirs: HashSet<String>,
}

impl Cpio {
    /// One entry header; newc fields are 32-bit, so larger sizes are an error, not a truncation.
    fn header(&mut self, name: &str, mode: u32, size: usize) -> Result<()> {
        let size = u32::try_from(size)
            .with_context(|| format!("cpio entry {name}: {size} bytes do not fit newc"))?;
        let namesize = u32::try_from(name.len() + 1)
            .with_context(|| format!("cpio entry name of {} bytes", name.len()))?;
        self.ino += 1;
        let fields = [self.ino, mode, 0, 0, 1, 0, size, 0, 0, 0, 0, namesize, 0];
        self.buf.extend_from_slice(b"070701");
        for f in fields {
            self.buf.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.push(0);
        self.pad();
        Ok(())
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    /// Create `path`'s parent directories (guest paths without the leading '/').
    fn parents(&mut self, path: &str) -> Result<()> {
        let mut acc = String::new();
        let parts: Vec<&str> = path.split('/').collect();
        for p in &parts[..parts.len().saturating_sub(1)] {
            if !acc.is_empty() {
                acc.push('/');
            }
            acc.push_str(p);
            self.dir(&acc.clone())?;
        }
        Ok(())
    }

    pub fn dir(&mut self, path: &str) -> Result<()> {
        let path = path.trim_start_matches('/');
        if path.is_empty() || self.dirs.contains(path) {
            return Ok(());
        }
        self.parents(path)?;
        self.dirs.insert(path.to_string());
        self.header(path, 0o040755, 0)
    }

    pub fn file(&mut self, path: &str, mode: u32, data: &[u8]) -> Result<()> {
        let path = path.trim_start_matches('/');
        self.parents(path)?;
        self.header(path, 0o100000 | mode, data.len())?;
        self.buf.extend_from_slice(data);
        self.pad();
        Ok(())
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> Result<()> {
        let path = path.trim_start_matches('/');
        self.parents(path)?;
        self.header(path, 0o120777, target.len())?;
        self.buf.extend_from_slice(target.as_bytes());
        self.pad();
        Ok(())
    }

    pub fn finish(mut self) -> Result<Vec<u8>> {
        self.header("TRAILER!!!", 0, 0)?;
        while !self.buf.len().is_multiple_of(512) {
            self.buf.push(0);
        }
        Ok(self.buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpio_is_newc_with_parents_and_trailer() {
        let mut c = Cpio::default();
        c.file("a/b/c", 0o644, b"hello").unwrap();
        let b = c.finish().unwrap();
        assert_eq!(b.len() % 512, 0);
        let text = String::from_utf8_lossy(&b);
        assert!(text.starts_with("070701"));
        // Parents first: a, a/b, then a/b/c, then the trailer.
        let pos = |s: &str| text.find(s).unwrap();
        assert!(pos("a\0") < pos("a/b\0"));
        assert!(pos("a/b\0") < pos("a/b/c\0"));
        assert!(pos("a/b/c\0") < pos("hello"));
        assert!(pos("hello") < pos("TRAILER!!!"));
        // File size field (7th) of the file header is 5.
        let h = pos("a/b/c\0") - 110;
        assert_eq!(&text[h + 6 + 6 * 8..h + 6 + 7 * 8], "00000005");
    }
}
