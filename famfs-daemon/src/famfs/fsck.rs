//! fsck: every check of §10 over a store, collected as findings (code, severity, log index, byte
//! offset, message) instead of stopping at the first problem, plus a text and a JSON rendering.
//!
//! Order: superblock (S1-S5) → log header (H1-H3) → full replay (E1-E3, F1-F4, D1, D2), read a chunk
//! at a time → the slots from `next_index` on up to the first zero slot (must be zero; a torn append
//! leaves some behind, reported as a note). Reads and memory follow the entries in use, not `log_len`.
//! Findings of severity error or warning make the report unclean.
//!
//! Owns: the order of the checks, [`FsckReport`] and its renderings. Owns nothing persistent and must
//! not write to the store; the checks themselves belong to `format` and `replay`.

use serde_json::{Value, json};

use super::{
    format::{
        ALLOC_UNIT, ENTRY_SIZE, FormatError, Geometry, LogHeader, SB_OFF_OMF_MINOR, SB_SIZE,
        Superblock, format_uuid, omf_minor_for,
    },
    log,
    replay::{Namespace, NsStats, Severity},
    role::{Role, role_for},
    store::{Store, StoreError},
};

/// One problem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// §10 check: "S1".."S5", "H1".."H3", "E1".."E3", "F1".."F4", "D1", "D2", or "NOTE"/"IO".
    pub code: &'static str,
    pub severity: Severity,
    pub index: Option<u64>,
    pub offset: Option<u64>,
    pub message: String,
}

/// Everything fsck found.
#[derive(Clone, Debug, Default)]
pub struct FsckReport {
    pub findings: Vec<Finding>,
    pub superblock: Option<Superblock>,
    pub header: Option<LogHeader>,
    pub role: Option<Role>,
    pub entries_played: u64,
    pub stats: NsStats,
    pub used_bytes: u64,
    pub free_bytes: u64,
}

impl FsckReport {
    /// No errors and no warnings.
    pub fn is_clean(&self) -> bool {
        self.findings.iter().all(|f| !f.severity.is_problem())
    }

    pub fn count(&self, s: Severity) -> usize {
        self.findings.iter().filter(|f| f.severity == s).count()
    }

    fn push_format(&mut self, e: &FormatError) {
        self.findings.push(Finding {
            code: e.code(),
            severity: Severity::Error,
            index: e.index(),
            offset: e.offset(),
            message: e.to_string(),
        });
    }

    /// Human-readable report (one line per finding, then a summary line).
    pub fn render_text(&self) -> String {
        let mut s = String::new();
        if let Some(sb) = &self.superblock {
            s.push_str(&format!(
                "superblock: version {}, uuid {}, device size {:#x}, log {:#x} bytes at {:#x}, this host: {}\n",
                sb.version,
                sb.fs_uuid_string(),
                sb.dev_size,
                sb.log_len,
                sb.log_offset,
                self.role.map_or("?", |r| r.as_str())
            ));
        }
        if let Some(h) = &self.header {
            s.push_str(&format!(
                "log: {} of {} entries used\n",
                h.next_index,
                h.last_index + 1
            ));
        }
        for f in &self.findings {
            s.push_str(&format!("{}: {}\n", f.severity.as_str(), f.message));
        }
        s.push_str(&format!(
            "fsck: {}: {} errors, {} warnings, {} notes; {} entries played, {} directories, {} files ({} bytes), {:#x} bytes allocated, {:#x} free\n",
            if self.is_clean() { "clean" } else { "NOT CLEAN" },
            self.count(Severity::Error),
            self.count(Severity::Warning),
            self.count(Severity::Note),
            self.entries_played,
            self.stats.dirs,
            self.stats.files,
            self.stats.file_bytes,
            self.used_bytes,
            self.free_bytes,
        ));
        s
    }

    pub fn to_json(&self) -> Value {
        json!({
            "clean": self.is_clean(),
            "errors": self.count(Severity::Error),
            "warnings": self.count(Severity::Warning),
            "notes": self.count(Severity::Note),
            "superblock": self.superblock.as_ref().map(|sb| json!({
                "version": sb.version,
                "uuid": sb.fs_uuid_string(),
                "dev_uuid": format_uuid(&sb.dev_uuid),
                "system_uuid": format_uuid(&sb.system_uuid),
                "dev_size": sb.dev_size,
                "log_offset": sb.log_offset,
                "log_len": sb.log_len,
                "alloc_unit": sb.alloc_unit,
                "daxdev": sb.dev_name_lossy(),
            })),
            "log": self.header.as_ref().map(|h| json!({
                "next_index": h.next_index,
                "last_index": h.last_index,
            })),
            "role": self.role.map(|r| r.as_str()),
            "entries_played": self.entries_played,
            "dirs": self.stats.dirs,
            "files": self.stats.files,
            "file_bytes": self.stats.file_bytes,
            "used_bytes": self.used_bytes,
            "free_bytes": self.free_bytes,
            "findings": self.findings.iter().map(|f| json!({
                "code": f.code,
                "severity": f.severity.as_str(),
                "index": f.index,
                "offset": f.offset,
                "message": f.message,
            })).collect::<Vec<_>>(),
        })
    }
}

/// Check everything readable on `store`. `host` decides the role shown (and `.meta/.log`'s mode).
pub fn fsck(store: &Store, host: Option<&[u8; 16]>) -> FsckReport {
    let mut r = FsckReport::default();
    let head = match store.read(0, store.len().min(SB_SIZE as u64)) {
        Ok(b) => b,
        Err(e) => {
            r.findings.push(Finding {
                code: "IO",
                severity: Severity::Error,
                index: None,
                offset: Some(0),
                message: e.to_string(),
            });
            return r;
        }
    };
    let sb = match Superblock::decode(&head) {
        Ok(sb) => sb,
        Err(e) => {
            r.push_format(&e);
            return r;
        }
    };
    let role = role_for(&sb.system_uuid, host);
    r.role = Some(role);
    r.superblock = Some(sb.clone());
    let want_minor = omf_minor_for(sb.version);
    if sb.omf_minor != want_minor {
        r.findings.push(Finding {
            code: "NOTE",
            severity: Severity::Note,
            index: None,
            offset: Some(SB_OFF_OMF_MINOR as u64),
            message: format!(
                "[NOTE] OMF minor version {} at byte offset {SB_OFF_OMF_MINOR:#x} (version {} writes {want_minor})",
                sb.omf_minor, sb.version
            ),
        });
    }
    let geo = match Geometry::new(&sb, store.len()) {
        Ok(g) => g,
        Err(e) => {
            r.push_format(&e);
            return r;
        }
    };
    let hdr = match log::read_header(store, &geo) {
        Ok(h) => h,
        Err(log::LogError::Format(e)) => {
            r.push_format(&e);
            return r;
        }
        Err(e) => {
            r.findings.push(Finding {
                code: "IO",
                severity: Severity::Error,
                index: None,
                offset: Some(geo.log_offset),
                message: e.to_string(),
            });
            return r;
        }
    };
    r.header = Some(hdr);
    let mut ns = Namespace::new(&geo, role);
    let io_finding = |e: StoreError, offset: u64| Finding {
        code: "IO",
        severity: Severity::Error,
        index: None,
        offset: Some(offset),
        message: e.to_string(),
    };
    // The header passed H3, so next_index ≤ slots and the log region fits in dd_size ≤ store length.
    // The log is read in windows: memory stays bounded whatever the header claims.
    let out = match log::play(store, &geo, &mut ns, hdr.next_index, false) {
        Ok(o) => o,
        Err(e) => {
            r.findings.push(io_finding(e, geo.log_offset));
            return r;
        }
    };
    r.entries_played = out.applied;
    for a in ns.anomalies().iter().chain(out.stopped.as_ref()) {
        r.findings.push(Finding {
            code: a.code(),
            severity: a.severity(),
            index: Some(a.index),
            offset: Some(a.offset),
            message: a.to_string(),
        });
    }
    if let Some(f) = torn_tail(store, &geo, &hdr) {
        r.findings.push(f);
    }
    r.stats = ns.stats();
    let used = ns.space().used_units() * ALLOC_UNIT;
    r.used_bytes = used;
    r.free_bytes = ns.space().free_bytes();
    r
}

/// Slots at and after `next_index` must be zero. An interrupted append leaves non-zero slots right
/// there (its entries are written before the header moves), so the run of non-zero slots from
/// `next_index` up to the first zero slot is checked and reported as a note; the rest of the log is
/// not read (it can be terabytes of never-written slots).
fn torn_tail(store: &Store, geo: &Geometry, hdr: &LogHeader) -> Option<Finding> {
    let mut dirty = 0u64;
    for i in hdr.next_index..geo.slots {
        match store.read_array::<ENTRY_SIZE>(geo.entry_offset(i)) {
            Ok(slot) if slot.iter().any(|&b| b != 0) => dirty += 1,
            _ => break,
        }
    }
    let i = hdr.next_index;
    (dirty > 0).then(|| Finding {
        code: "NOTE",
        severity: Severity::Note,
        index: Some(i),
        offset: Some(geo.entry_offset(i)),
        message: format!(
            "[NOTE] {dirty} log slot(s) from next_index {i} (byte offset {:#x}) on are not zero (an interrupted append leaves them; replay ignores them)",
            geo.entry_offset(i)
        ),
    })
}
