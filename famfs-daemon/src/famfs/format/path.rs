//! Relative paths of FILE and MKDIR entries (E3): the 80-byte NUL-padded field and its checks.
//!
//! Owns: [`RelPath`] and the path rules. Must not resolve paths against a namespace (that is replay).

use thiserror::Error;

use super::consts::RELPATH_LEN;

/// Why a relpath is rejected (E3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum PathProblem {
    #[error("relpath has no NUL within its 80 bytes")]
    NoNul,
    #[error("relpath is empty")]
    Empty,
    #[error("relpath is absolute (starts with '/')")]
    Absolute,
    #[error("relpath has a '.' or '..' component")]
    DotComponent,
    #[error("relpath has an empty component ('//' or a trailing '/')")]
    EmptyComponent,
    #[error("relpath is longer than 79 bytes")]
    TooLong,
    #[error("relpath contains a NUL byte")]
    InteriorNul,
}

/// Check a path relative to the mount root (E3 plus the [derived] component rules).
pub fn check_relpath(p: &[u8]) -> Result<(), PathProblem> {
    if p.is_empty() {
        return Err(PathProblem::Empty);
    }
    if p[0] == b'/' {
        return Err(PathProblem::Absolute);
    }
    if p.len() >= RELPATH_LEN {
        return Err(PathProblem::TooLong);
    }
    if p.contains(&0) {
        return Err(PathProblem::InteriorNul);
    }
    for c in p.split(|&c| c == b'/') {
        if c.is_empty() {
            return Err(PathProblem::EmptyComponent);
        }
        if c == b"." || c == b".." {
            return Err(PathProblem::DotComponent);
        }
    }
    Ok(())
}

/// An 80-byte NUL-padded relpath field, kept exactly as stored.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct RelPath([u8; RELPATH_LEN]);

impl RelPath {
    /// A checked path for writing (≤ 79 bytes, so always NUL-terminated).
    pub fn new(path: &[u8]) -> Result<RelPath, PathProblem> {
        check_relpath(path)?;
        let mut raw = [0u8; RELPATH_LEN];
        raw[..path.len()].copy_from_slice(path);
        Ok(RelPath(raw))
    }

    /// The field as stored, unchecked.
    pub fn from_raw(raw: [u8; RELPATH_LEN]) -> RelPath {
        RelPath(raw)
    }

    pub fn raw(&self) -> &[u8; RELPATH_LEN] {
        &self.0
    }

    /// The path up to its NUL, checked (E3).
    pub fn checked(&self) -> Result<&[u8], PathProblem> {
        let n = self
            .0
            .iter()
            .position(|&c| c == 0)
            .ok_or(PathProblem::NoNul)?;
        let p = &self.0[..n];
        check_relpath(p)?;
        Ok(p)
    }

    /// For messages: up to the NUL (or all 80 bytes), lossily decoded.
    pub fn lossy(&self) -> String {
        let n = self.0.iter().position(|&c| c == 0).unwrap_or(RELPATH_LEN);
        String::from_utf8_lossy(&self.0[..n]).into_owned()
    }
}

impl std::fmt::Debug for RelPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RelPath({:?})", self.lossy())
    }
}
