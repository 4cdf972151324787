//! The kernel's symbol table (`/proc/kallsyms`, or a file in its format): the one reader of it.
//!
//! Owns: streaming the file line by line (it is several MiB on a distribution kernel, so it is never read
//! whole), parsing `<addr> <type> <name>[\t[module]]`, and symbol look-ups. Must not know what the symbols
//! are used for (famfs dialect detection in `fuse`, optional kernel-function probes in `probes`): callers
//! decide what an unreadable file means for them.

use std::{
    collections::HashSet,
    fs::File,
    io::{self, BufRead, BufReader},
    ops::ControlFlow,
    path::Path,
};

/// Where the running kernel publishes its symbols.
pub const PROC_KALLSYMS: &str = "/proc/kallsyms";

/// One symbol line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Symbol<'a> {
    /// The `nm`-style type letter (`t`/`T` text, `d`/`D` data, ...).
    pub kind: &'a str,
    pub name: &'a str,
}

impl Symbol<'_> {
    /// A function: a text symbol, local (`t`) or global (`T`).
    pub fn is_function(&self) -> bool {
        matches!(self.kind, "t" | "T")
    }

    /// Parse one line; `None` for a line with fewer than three fields.
    pub fn parse(line: &str) -> Option<Symbol<'_>> {
        let mut f = line.split_whitespace();
        let (Some(_addr), Some(kind), Some(name)) = (f.next(), f.next(), f.next()) else {
            return None;
        };
        Some(Symbol { kind, name })
    }
}

/// Stream the symbol file at `path`, handing each symbol to `visit` until it breaks or the file ends.
pub fn scan(path: &Path, mut visit: impl FnMut(Symbol<'_>) -> ControlFlow<()>) -> io::Result<()> {
    let mut r = BufReader::with_capacity(64 * 1024, File::open(path)?);
    let mut line = String::with_capacity(256);
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Ok(());
        }
        if let Some(sym) = Symbol::parse(&line)
            && visit(sym).is_break()
        {
            return Ok(());
        }
    }
}

/// Whether `path` lists a symbol called `name` (of any type, in vmlinux or a module). Stops at the first
/// match.
pub fn has_symbol(path: &Path, name: &str) -> io::Result<bool> {
    let mut found = false;
    scan(path, |s| {
        if s.name == name {
            found = true;
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })?;
    Ok(found)
}

/// Which of `names` are functions (text symbols) in `path`. Stops once all were found.
pub fn functions_present(path: &Path, names: &[&str]) -> io::Result<HashSet<String>> {
    let mut found = HashSet::new();
    scan(path, |s| {
        if s.is_function() && names.contains(&s.name) {
            found.insert(s.name.to_string());
            if found.len() == names.len() {
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    })?;
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "\
ffffffff81000000 T _text
ffffffff81234560 t fuse_open
ffffffff81234580 D fuse_data_only
ffffffffc0001000 t famfs_fuse_iomap_begin\t[fuse]
short line
ffffffff81234600 T dax_iomap_fault
";

    fn table() -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("kallsyms");
        std::fs::write(&p, TABLE).unwrap();
        (dir, p)
    }

    #[test]
    fn parses_lines_with_and_without_module() {
        let s = Symbol::parse("ffffffffc0001000 t famfs_fuse_iomap_begin\t[fuse]\n").unwrap();
        assert_eq!((s.kind, s.name), ("t", "famfs_fuse_iomap_begin"));
        assert!(s.is_function());
        let d = Symbol::parse("0 D some_data").unwrap();
        assert!(!d.is_function());
        assert_eq!(Symbol::parse("0 T"), None);
        assert_eq!(Symbol::parse(""), None);
    }

    #[test]
    fn finds_symbols_of_any_type_and_module() {
        let (_d, p) = table();
        assert!(has_symbol(&p, "famfs_fuse_iomap_begin").unwrap());
        assert!(has_symbol(&p, "fuse_data_only").unwrap());
        assert!(!has_symbol(&p, "famfs_fuse_iomap").unwrap());
        assert!(
            !has_symbol(&p, "line").unwrap(),
            "short lines carry no name"
        );
    }

    #[test]
    fn functions_present_keeps_text_symbols_only() {
        let (_d, p) = table();
        let got = functions_present(
            &p,
            &["fuse_open", "fuse_data_only", "dax_iomap_fault", "nope"],
        )
        .unwrap();
        let want: HashSet<String> = ["fuse_open", "dax_iomap_fault"].map(String::from).into();
        assert_eq!(got, want);
    }

    #[test]
    fn scan_stops_when_asked() {
        let (_d, p) = table();
        let mut seen = Vec::new();
        scan(&p, |s| {
            seen.push(s.name.to_string());
            if s.name == "fuse_open" {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .unwrap();
        assert_eq!(seen, ["_text", "fuse_open"]);
    }

    #[test]
    fn unreadable_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let absent = dir.path().join("absent");
        assert!(has_symbol(&absent, "x").is_err());
        assert!(functions_present(&absent, &["x"]).is_err());
    }
}
