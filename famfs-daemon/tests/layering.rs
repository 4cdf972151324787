//! The import direction of the crate, checked: every `crate::…` (and `super::…` that leaves its top-level
//! module) reference in `src/` must point at the same or an earlier stage of the data path
//!
//! `util` → `famfs` → `fuse` → `server` → `probes` → `join` → `metrics` → `http` → `top`/`regress` →
//! `daemon` → `cli`.
//!
//! Comments (doc links included) are not imports and are skipped. A module missing from [`STAGES`] fails
//! the test, so a new top-level module has to be placed on the path when it is added.

// Test code: a failed expectation is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
};

/// Top-level modules in data-path order; a module may use modules of a lower rank (and itself).
/// Equal ranks may not use each other.
const STAGES: &[(&str, u32)] = &[
    ("util", 0),
    ("famfs", 1),
    ("fuse", 2),
    ("server", 3),
    ("probes", 4),
    ("join", 5),
    ("metrics", 6),
    ("http", 7),
    ("top", 8),
    ("regress", 8),
    ("daemon", 9),
    ("cli", 10),
];

fn rank(m: &str) -> Option<u32> {
    STAGES.iter().find(|(n, _)| *n == m).map(|(_, r)| *r)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).expect("read src dir") {
        let p = e.expect("dir entry").path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Module path of a file below `src/` (`a/b.rs` → [a, b], `a/mod.rs` → [a]).
fn module_path(rel: &Path) -> Vec<String> {
    let mut v: Vec<String> = rel
        .iter()
        .map(|c| c.to_string_lossy().into_owned())
        .collect();
    if let Some(last) = v.pop() {
        let stem = last.trim_end_matches(".rs");
        if stem != "mod" && stem != "lib" {
            v.push(stem.to_string());
        }
    }
    v
}

/// Source without `//` comments (strings containing `//` are rare enough here; a string that mentions a
/// module path is not an import either, so losing its tail is harmless).
fn strip_comments(src: &str) -> String {
    src.lines()
        .map(|l| l.find("//").map_or(l, |i| &l[..i]))
        .collect::<Vec<_>>()
        .join("\n")
}

fn ident_at(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// First path segments named after `crate::` (including each item of a `crate::{a, b::c}` group).
fn crate_refs(src: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = src;
    while let Some(i) = rest.find("crate::") {
        let before = rest[..i].chars().last();
        rest = &rest[i + "crate::".len()..];
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue; // e.g. `famfs_crate::`
        }
        let t = rest.trim_start();
        if let Some(group) = t.strip_prefix('{') {
            let mut depth = 1;
            let mut item_start = true;
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    ',' if depth == 1 => item_start = true,
                    c if item_start && (c.is_ascii_alphabetic() || c == '_') && depth == 1 => {
                        out.insert(ident_at(&group[j..]).to_string());
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            out.insert(ident_at(t).to_string());
        }
    }
    out
}

/// Top-level modules reached through `super::super::…` chains that climb out of the file's own
/// top-level module.
fn super_refs(src: &str, path: &[String]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = src;
    while let Some(i) = rest.find("super::") {
        rest = &rest[i..];
        let mut n = 0;
        while let Some(r) = rest.strip_prefix("super::") {
            n += 1;
            rest = r;
        }
        if n >= path.len() {
            out.insert(ident_at(rest.trim_start()).to_string());
        }
    }
    out
}

#[test]
fn lower_stages_never_import_higher_ones() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut violations = Vec::new();
    let mut unplaced = BTreeSet::new();
    for f in &files {
        let rel = f.strip_prefix(&src).expect("below src");
        let path = module_path(rel);
        let Some(top) = path.first() else { continue }; // lib.rs
        if top == "bin" {
            continue; // binaries use the crate from outside, through `famfs_daemon::`
        }
        let Some(own) = rank(top) else {
            unplaced.insert(top.clone());
            continue;
        };
        let text = strip_comments(&fs::read_to_string(f).expect("read source"));
        let refs = crate_refs(&text)
            .into_iter()
            .chain(super_refs(&text, &path));
        for r in refs {
            if r == *top {
                continue;
            }
            match rank(&r) {
                Some(theirs) if theirs < own => {}
                Some(_) => violations.push(format!("{} ({top}) uses {r}", rel.display())),
                None => {}
            }
        }
    }
    assert!(
        unplaced.is_empty(),
        "top-level modules not placed on the data path in STAGES: {unplaced:?}"
    );
    assert!(
        violations.is_empty(),
        "imports against the data path:\n  {}",
        violations.join("\n  ")
    );
}

#[test]
fn the_checker_sees_groups_and_super_chains() {
    let refs = crate_refs("use crate::{join::{A, B}, metrics::C};\nlet x = crate::util::f();");
    assert_eq!(
        refs.into_iter().collect::<Vec<_>>(),
        vec!["join", "metrics", "util"]
    );
    let path = vec!["top".to_string(), "app".to_string()];
    assert!(super_refs("super::super::collector::f()", &path).contains("collector"));
    assert!(super_refs("super::model::Row", &path).is_empty());
    assert_eq!(strip_comments("a // crate::cli\nb"), "a \nb");
}
