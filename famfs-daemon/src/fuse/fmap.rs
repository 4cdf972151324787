//! famfs GET_FMAP and GET_DAXDEV reply encoding from a filesystem-neutral description (protocol spec
//! §6.2–6.4, §7.1).
//!
//! Owns: [`WireFmap`] / [`WireLayout`] / [`WireExtent`] (what a filesystem hands the session), their
//! byte-exact serialization into a reusable buffer, and the GET_DAXDEV reply. Must not know where
//! extents come from (the famfs log, an image): that is the filesystem's business. Size limits and
//! retries are dialect policy and live in `dialect`.

use std::fmt;

use super::abi::{DaxdevOut, FmapHeader, FmapInterleavedExt, FmapSimpleExt, famfs};

/// One extent (or strip) of a file on a daxdev.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WireExtent {
    pub devindex: u32,
    pub offset: u64,
    pub len: u64,
}

/// How the file's bytes are laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireLayout<'a> {
    /// Extents in file order.
    Simple(&'a [WireExtent]),
    /// One interleaved extent: `chunk_size` bytes from each strip in turn. `nstrips` must equal
    /// `strips.len()`; `nbytes` is the bytes covered (famfs uses the file size) and must not be 0.
    Interleaved {
        nstrips: u32,
        chunk_size: u32,
        nbytes: u64,
        strips: &'a [WireExtent],
    },
}

/// A file's map as the famfs kernel receives it in the GET_FMAP reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WireFmap<'a> {
    /// `famfs::FILE_TYPE_*`; the reference daemon always sends `FILE_TYPE_REG`.
    pub file_type: u8,
    pub file_size: u64,
    pub layout: WireLayout<'a>,
}

/// A [`WireFmap`] that cannot be serialized.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FmapError {
    /// A simple layout with no extents, or an interleaved one with no strips.
    NoExtents,
    /// `nstrips` disagrees with the number of strips given.
    StripCount { nstrips: u32, strips: usize },
    /// Interleaved `nbytes` is 0 (the kernel rejects it).
    ZeroNbytes,
    /// More extents than a u32 count can hold.
    TooManyExtents(usize),
}

impl fmt::Display for FmapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FmapError::NoExtents => f.write_str("fmap has no extents"),
            FmapError::StripCount { nstrips, strips } => {
                write!(
                    f,
                    "interleaved fmap: nstrips {nstrips} but {strips} strips given"
                )
            }
            FmapError::ZeroNbytes => f.write_str("interleaved fmap: ie_nbytes is 0"),
            FmapError::TooManyExtents(n) => write!(f, "fmap has {n} extents (more than u32)"),
        }
    }
}

impl std::error::Error for FmapError {}

impl WireFmap<'_> {
    /// Serialized length in bytes.
    pub fn encoded_len(&self) -> usize {
        FmapHeader::SIZE
            + match self.layout {
                WireLayout::Simple(e) => e.len() * FmapSimpleExt::SIZE,
                WireLayout::Interleaved { strips, .. } => {
                    FmapInterleavedExt::SIZE + strips.len() * FmapSimpleExt::SIZE
                }
            }
    }

    /// Simple extent records on the wire: the extents, or the strips of the interleaved extent.
    pub fn extent_count(&self) -> usize {
        match self.layout {
            WireLayout::Simple(e) => e.len(),
            WireLayout::Interleaved { strips, .. } => strips.len(),
        }
    }

    /// Check the description is serializable.
    pub fn validate(&self) -> Result<(), FmapError> {
        match self.layout {
            WireLayout::Simple(e) => {
                if e.is_empty() {
                    return Err(FmapError::NoExtents);
                }
                if u32::try_from(e.len()).is_err() {
                    return Err(FmapError::TooManyExtents(e.len()));
                }
            }
            WireLayout::Interleaved {
                nstrips,
                nbytes,
                strips,
                ..
            } => {
                if strips.is_empty() {
                    return Err(FmapError::NoExtents);
                }
                if usize::try_from(nstrips).ok() != Some(strips.len()) {
                    return Err(FmapError::StripCount {
                        nstrips,
                        strips: strips.len(),
                    });
                }
                if nbytes == 0 {
                    return Err(FmapError::ZeroNbytes);
                }
            }
        }
        Ok(())
    }

    /// Serialize into `out` (cleared first; its capacity is reused). Returns the length written.
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<usize, FmapError> {
        self.validate()?;
        out.clear();
        let (ext_type, nextents) = match self.layout {
            // validate() checked the count fits in u32.
            WireLayout::Simple(e) => (famfs::EXT_SIMPLE, e.len() as u32),
            WireLayout::Interleaved { .. } => (famfs::EXT_INTERLEAVE, 1),
        };
        let head = FmapHeader {
            file_type: self.file_type,
            fmap_version: famfs::FMAP_VERSION,
            ext_type,
            nextents,
            file_size: self.file_size,
            ..Default::default()
        };
        out.extend_from_slice(&head.to_bytes());
        let push_simple = |out: &mut Vec<u8>, e: &WireExtent| {
            let se = FmapSimpleExt {
                se_devindex: e.devindex,
                se_offset: e.offset,
                se_len: e.len,
                ..Default::default()
            };
            out.extend_from_slice(&se.to_bytes());
        };
        match self.layout {
            WireLayout::Simple(ext) => ext.iter().for_each(|e| push_simple(out, e)),
            WireLayout::Interleaved {
                nstrips,
                chunk_size,
                nbytes,
                strips,
            } => {
                let ie = FmapInterleavedExt {
                    ie_nstrips: nstrips,
                    ie_chunk_size: chunk_size,
                    ie_nbytes: nbytes,
                    ..Default::default()
                };
                out.extend_from_slice(&ie.to_bytes());
                strips.iter().for_each(|e| push_simple(out, e));
            }
        }
        Ok(out.len())
    }
}

/// A GET_DAXDEV reply for daxdev `index` at `path` (NUL-terminated in a 256-byte field). `None` when
/// the index does not fit the u16 field or the path is longer than 255 bytes or contains a NUL.
pub fn daxdev_reply(index: u64, path: &[u8]) -> Option<DaxdevOut> {
    let index = u16::try_from(index).ok()?;
    if path.len() > famfs::DAXDEV_NAME_MAX || path.contains(&0) {
        return None;
    }
    let mut out = DaxdevOut {
        index,
        ..Default::default()
    };
    out.name[..path.len()].copy_from_slice(path);
    Some(out)
}
