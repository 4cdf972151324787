//! UUID text: the canonical 8-4-4-4-12 form famfs prints and reads (superblock UUIDs, the host's
//! `system_uuid` file).
//!
//! Owns: UUID formatting and parsing. Must not touch structures or files.

/// Canonical lowercase 8-4-4-4-12 text of a raw UUID (what `uuid_unparse` prints).
pub fn format_uuid(u: &[u8; 16]) -> String {
    let mut s = String::with_capacity(36);
    for (i, b) in u.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// Parse `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` (case-insensitive, surrounding whitespace ignored).
pub fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let s = s.trim();
    if s.len() != 36 {
        return None;
    }
    let mut out = [0u8; 16];
    let mut n = 0;
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if matches!(i, 8 | 13 | 18 | 23) {
            if bytes[i] != b'-' {
                return None;
            }
            i += 1;
            continue;
        }
        let hi = (bytes[i] as char).to_digit(16)?;
        let lo = (*bytes.get(i + 1)? as char).to_digit(16)?;
        *out.get_mut(n)? = (hi * 16 + lo) as u8;
        n += 1;
        i += 2;
    }
    (n == 16).then_some(out)
}
