//! An independent count of `filemap:mm_filemap_fault` events on one device, read from a private
//! ftrace instance (tracefs, which the daemon mounted), to check the daemon's own fault counts
//! against. Owns that instance's lifetime (removed on drop); it never touches the global trace.

use std::{collections::BTreeMap, path::PathBuf};

/// A private ftrace instance with `filemap:mm_filemap_fault` enabled and filtered on one `s_dev`.
pub struct FtraceFaults {
    dir: PathBuf,
}

impl FtraceFaults {
    /// Start counting the page-cache faults of device `dev` (a FUSE connection number).
    pub fn start(dev: u32) -> FtraceFaults {
        let dir = PathBuf::from(format!(
            "/sys/kernel/tracing/instances/famfs-test-{}",
            std::process::id()
        ));
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let f = FtraceFaults { dir };
        let ev = f.dir.join("events/filemap/mm_filemap_fault");
        std::fs::write(ev.join("filter"), format!("s_dev == {dev}")).unwrap();
        std::fs::write(ev.join("enable"), "1").unwrap();
        f
    }

    /// Stop counting; events per inode.
    pub fn stop(&self) -> BTreeMap<u64, u64> {
        let ev = self.dir.join("events/filemap/mm_filemap_fault");
        std::fs::write(ev.join("enable"), "0").unwrap();
        let trace = std::fs::read_to_string(self.dir.join("trace")).unwrap();
        let mut per_ino = BTreeMap::new();
        for l in trace.lines().filter(|l| l.contains("mm_filemap_fault:")) {
            let ino = l
                .split_whitespace()
                .find_map(|w| w.strip_prefix("ino="))
                .and_then(|h| u64::from_str_radix(h, 16).ok())
                .unwrap_or_else(|| panic!("no ino= in {l:?}"));
            *per_ino.entry(ino).or_insert(0) += 1;
        }
        per_ino
    }
}

impl Drop for FtraceFaults {
    fn drop(&mut self) {
        let _ = std::fs::write(self.dir.join("events/filemap/mm_filemap_fault/enable"), "0");
        let _ = std::fs::remove_dir(&self.dir);
    }
}
