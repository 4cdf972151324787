//! UUID text: the canonical 8-4-4-4-12 form famfs prints and reads (superblock UUIDs, the host's
//! `system_uuid` file), and random version-4 UUIDs for mkfs. Text and layout are the `uuid` crate's.
//!
//! Owns: UUID formatting, parsing and construction from random bytes. Must not touch structures or
//! files.

use uuid::{Builder, Uuid};

/// Canonical lowercase 8-4-4-4-12 text of a raw UUID (what `uuid_unparse` prints).
pub fn format_uuid(u: &[u8; 16]) -> String {
    Uuid::from_bytes(*u).hyphenated().to_string()
}

/// Parse `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` (case-insensitive, surrounding whitespace ignored).
/// Only the hyphenated form: the other spellings the `uuid` crate accepts (simple, braced, URN) are
/// not what famfs writes.
pub fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let s = s.trim();
    if s.len() != 36 {
        return None;
    }
    Uuid::try_parse(s).ok().map(Uuid::into_bytes)
}

/// A version-4, RFC 4122-variant UUID made from 16 random bytes.
pub fn uuid_v4_from(random: [u8; 16]) -> [u8; 16] {
    Builder::from_random_bytes(random).into_uuid().into_bytes()
}
