//! Extents and file maps (§4.6-§4.8, §9): the stored fmap of a FILE entry ([`RawFmap`]), its F1-F3
//! checks against the device geometry, and the checked [`Fmap`] that maps file offsets to device
//! offsets.
//!
//! Owns: the fmap rules and offset resolution. Must not know the entry framing around the fmap (that
//! is `entry`) nor the allocation map (F4 is replay's).

use thiserror::Error;

use super::{
    consts::{ALLOC_UNIT, IEXT_SIZE, MAX_SIMPLE_EXTENTS, MAX_STRIPS},
    superblock::Geometry,
};

/// A simple extent (24 bytes on media).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Extent {
    pub devindex: u64,
    pub offset: u64,
    pub len: u64,
}

/// A checked file map (what the namespace keeps and GET_FMAP serves).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fmap {
    /// The file is the concatenation of the extents in list order.
    Simple(Vec<Extent>),
    /// Chunks of `chunk_size` bytes go round-robin over the strips.
    Interleaved {
        chunk_size: u64,
        strips: Vec<Extent>,
    },
}

impl Fmap {
    /// Map a file offset to `(device offset, contiguous bytes from there)` (§9). The byte count stays
    /// within the extent (simple) or the chunk (interleaved) and within `file_size`. `None` past EOF or
    /// past the mapped space.
    pub fn resolve(&self, file_off: u64, file_size: u64) -> Option<(u64, u64)> {
        if file_off >= file_size {
            return None;
        }
        let to_eof = file_size - file_off;
        match self {
            Fmap::Simple(exts) => {
                let mut base = 0u64;
                for e in exts {
                    let end = base.checked_add(e.len)?;
                    if file_off < end {
                        let within = file_off - base;
                        let dev = e.offset.checked_add(within)?;
                        return Some((dev, (e.len - within).min(to_eof)));
                    }
                    base = end;
                }
                None
            }
            Fmap::Interleaved { chunk_size, strips } => {
                let c = *chunk_size;
                if c == 0 || strips.is_empty() {
                    return None;
                }
                let n = strips.len() as u64;
                let chunk_num = file_off / c;
                let chunk_off = file_off % c;
                let stripe = chunk_num / n;
                let strip = strips.get((chunk_num % n) as usize)?;
                let within = stripe.checked_mul(c)?.checked_add(chunk_off)?;
                if within >= strip.len {
                    return None;
                }
                let dev = strip.offset.checked_add(within)?;
                Some((dev, (c - chunk_off).min(strip.len - within).min(to_eof)))
            }
        }
    }

    /// The extents (simple) or strips (interleaved).
    pub fn extents(&self) -> &[Extent] {
        match self {
            Fmap::Simple(e) => e,
            Fmap::Interleaved { strips, .. } => strips,
        }
    }

    /// Sum of the extent/strip lengths (u128: cannot overflow).
    pub fn total_len(&self) -> u128 {
        self.extents().iter().map(|e| u128::from(e.len)).sum()
    }
}

/// The fmap field of a FILE entry as stored (counts unchecked; all 16 slots kept).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RawFmap {
    Simple {
        nextents: u32,
        extents: [Extent; MAX_SIMPLE_EXTENTS],
    },
    Interleave {
        niext: u32,
        nstrips: u64,
        chunk_size: u64,
        strips: [Extent; MAX_STRIPS],
    },
    /// An extent type this tool does not know; the union bytes are kept verbatim.
    Unknown {
        ext_type: u32,
        count: u32,
        raw: [u8; IEXT_SIZE],
    },
}

/// Why a FILE entry's fmap is rejected (F1-F3). `k` is the extent/strip number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum FmapProblem {
    #[error("[F1] unknown extent type {0}")]
    ExtType(u32),
    #[error("[F1] simple extent count {0} (must be 1..=16)")]
    ExtentCount(u32),
    #[error("[F1] interleaved extent count {0} (must be 1)")]
    InterleaveCount(u32),
    #[error("[F1] strip count {0} (must be 1..=16)")]
    StripCount(u64),
    #[error("[F2] extent {k}: devindex {devindex} (must be 0)")]
    DevIndex { k: usize, devindex: u64 },
    #[error("[F2] extent {k}: offset 0 (only .meta/.superblock may start at 0)")]
    ZeroOffset { k: usize },
    #[error("[F2] extent {k}: offset {offset:#x} / length {len:#x} not multiples of 2 MiB")]
    Misaligned { k: usize, offset: u64, len: u64 },
    #[error("[F2] extent {k}: [{offset:#x}, +{len:#x}) ends past the device size {dev_size:#x}")]
    PastDevice {
        k: usize,
        offset: u64,
        len: u64,
        dev_size: u64,
    },
    #[error(
        "[F2] extent {k}: offset {offset:#x} overlaps the superblock/log area [0, {data_start:#x})"
    )]
    InMetadata {
        k: usize,
        offset: u64,
        data_start: u64,
    },
    #[error("[F3] file size {size:#x} exceeds the mapped space {mapped:#x}")]
    SizeExceedsExtents { size: u64, mapped: u128 },
    #[error("[F3] chunk size {0:#x} is not a power of 2 and a multiple of 2 MiB")]
    ChunkSize(u64),
    #[error("[F3] strip {k} length {len:#x} differs from strip 0 length {first:#x}")]
    UnequalStrips { k: usize, len: u64, first: u64 },
}

impl FmapProblem {
    pub fn code(&self) -> &'static str {
        match self {
            FmapProblem::ExtType(_)
            | FmapProblem::ExtentCount(_)
            | FmapProblem::InterleaveCount(_)
            | FmapProblem::StripCount(_) => "F1",
            FmapProblem::DevIndex { .. }
            | FmapProblem::ZeroOffset { .. }
            | FmapProblem::Misaligned { .. }
            | FmapProblem::PastDevice { .. }
            | FmapProblem::InMetadata { .. } => "F2",
            FmapProblem::SizeExceedsExtents { .. }
            | FmapProblem::ChunkSize(_)
            | FmapProblem::UnequalStrips { .. } => "F3",
        }
    }
}

fn check_extent(k: usize, e: &Extent, geo: &Geometry) -> Result<(), FmapProblem> {
    if e.devindex != 0 {
        return Err(FmapProblem::DevIndex {
            k,
            devindex: e.devindex,
        });
    }
    if e.offset == 0 {
        return Err(FmapProblem::ZeroOffset { k });
    }
    if !e.offset.is_multiple_of(ALLOC_UNIT) || !e.len.is_multiple_of(ALLOC_UNIT) {
        return Err(FmapProblem::Misaligned {
            k,
            offset: e.offset,
            len: e.len,
        });
    }
    match e.offset.checked_add(e.len) {
        Some(end) if end <= geo.dev_size => {}
        _ => {
            return Err(FmapProblem::PastDevice {
                k,
                offset: e.offset,
                len: e.len,
                dev_size: geo.dev_size,
            });
        }
    }
    if e.offset < geo.data_start() {
        return Err(FmapProblem::InMetadata {
            k,
            offset: e.offset,
            data_start: geo.data_start(),
        });
    }
    Ok(())
}

impl RawFmap {
    /// The on-media form of a checked fmap (F1 counts enforced so it can be stored).
    pub fn from_fmap(f: &Fmap) -> Result<RawFmap, FmapProblem> {
        match f {
            Fmap::Simple(exts) => {
                if exts.is_empty() || exts.len() > MAX_SIMPLE_EXTENTS {
                    return Err(FmapProblem::ExtentCount(exts.len() as u32));
                }
                let mut extents = [Extent::default(); MAX_SIMPLE_EXTENTS];
                extents[..exts.len()].copy_from_slice(exts);
                Ok(RawFmap::Simple {
                    nextents: exts.len() as u32,
                    extents,
                })
            }
            Fmap::Interleaved { chunk_size, strips } => {
                if strips.is_empty() || strips.len() > MAX_STRIPS {
                    return Err(FmapProblem::StripCount(strips.len() as u64));
                }
                let mut s = [Extent::default(); MAX_STRIPS];
                s[..strips.len()].copy_from_slice(strips);
                Ok(RawFmap::Interleave {
                    niext: 1,
                    nstrips: strips.len() as u64,
                    chunk_size: *chunk_size,
                    strips: s,
                })
            }
        }
    }

    /// F1-F3 against `geo` for a file of `size` bytes; the checked [`Fmap`] on success.
    pub fn check(&self, size: u64, geo: &Geometry) -> Result<Fmap, FmapProblem> {
        match self {
            RawFmap::Simple { nextents, extents } => {
                let n = *nextents as usize;
                if n == 0 || n > MAX_SIMPLE_EXTENTS {
                    return Err(FmapProblem::ExtentCount(*nextents));
                }
                let used = &extents[..n];
                for (k, e) in used.iter().enumerate() {
                    check_extent(k, e, geo)?;
                }
                let mapped: u128 = used.iter().map(|e| u128::from(e.len)).sum();
                if u128::from(size) > mapped {
                    return Err(FmapProblem::SizeExceedsExtents { size, mapped });
                }
                Ok(Fmap::Simple(used.to_vec()))
            }
            RawFmap::Interleave {
                niext,
                nstrips,
                chunk_size,
                strips,
            } => {
                if *niext != 1 {
                    return Err(FmapProblem::InterleaveCount(*niext));
                }
                if *nstrips == 0 || *nstrips > MAX_STRIPS as u64 {
                    return Err(FmapProblem::StripCount(*nstrips));
                }
                if !chunk_size.is_power_of_two() || chunk_size % ALLOC_UNIT != 0 {
                    return Err(FmapProblem::ChunkSize(*chunk_size));
                }
                let used = &strips[..*nstrips as usize];
                for (k, e) in used.iter().enumerate() {
                    check_extent(k, e, geo)?;
                }
                let first = used[0].len;
                if let Some((k, e)) = used.iter().enumerate().find(|(_, e)| e.len != first) {
                    return Err(FmapProblem::UnequalStrips {
                        k,
                        len: e.len,
                        first,
                    });
                }
                let mapped = u128::from(first) * u128::from(*nstrips);
                if u128::from(size) > mapped {
                    return Err(FmapProblem::SizeExceedsExtents { size, mapped });
                }
                Ok(Fmap::Interleaved {
                    chunk_size: *chunk_size,
                    strips: used.to_vec(),
                })
            }
            RawFmap::Unknown { ext_type, .. } => Err(FmapProblem::ExtType(*ext_type)),
        }
    }
}
