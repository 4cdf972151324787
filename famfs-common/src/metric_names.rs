//! Names of every metric the daemon exports: the one place they are spelled.
//!
//! Each [`Metric`] carries the base name the daemon registers (prometheus-client adds the `famfs_`
//! prefix, the unit and the type suffix) and the full exported family name that readers (the VM lane,
//! tests, dashboards checks) look for. Both come from one literal, so they cannot drift. Histograms'
//! `name` is the family name; their series add `_bucket`, `_sum` and `_count`.
//! Owns names only: help texts, labels and encoding belong to the daemon's `metrics` module.

/// The one prefix of every exported metric.
pub const PREFIX: &str = "famfs";

/// One metric family's names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Metric {
    /// Name handed to the registry: no prefix, no unit, no type suffix.
    pub base: &'static str,
    /// Exported family name: `famfs_<base>[_<unit>][_total]`.
    pub name: &'static str,
}

macro_rules! metrics {
    ($($(#[$doc:meta])* $id:ident = $base:literal $suffix:literal;)*) => {
        $($(#[$doc])* pub const $id: Metric = Metric { base: $base, name: concat!("famfs_", $base, $suffix) };)*
        /// Every family, for checks that walk them all (README table, dashboards).
        pub const ALL: &[Metric] = &[$($id),*];
    };
}

metrics! {
    /// Build and kernel of the running daemon (gauge, value 1).
    BUILD_INFO = "build_info" "";
    // Kernel request path (fuse:fuse_request_send/_end).
    FUSE_REQUESTS = "fuse_requests" "_total";
    FUSE_REQUEST_ERRORS = "fuse_request_errors" "_total";
    FUSE_REQUEST_DURATION = "fuse_request_duration" "_seconds";
    FUSE_REPLY_SIZE = "fuse_reply_size" "_bytes";
    // DAX and page-cache faults, optional kernel functions.
    DAX_FAULTS = "dax_faults" "_total";
    DAX_FAULT_DURATION = "dax_fault_duration" "_seconds";
    PAGE_CACHE_FAULTS = "page_cache_faults" "_total";
    KERNEL_FUNCTION_CALLS = "kernel_function_calls" "_total";
    KERNEL_FUNCTION_DURATION = "kernel_function_duration" "_seconds";
    // Probe health and self-cost.
    PROBE_ATTACHED = "probe_attached" "";
    PROBE_EVENTS = "probe_events" "_total";
    PROBE_RUNS = "probe_runs" "_total";
    PROBE_RUN_TIME = "probe_run_time" "_seconds_total";
    PROBE_RECURSION_MISSES = "probe_recursion_misses" "_total";
    // Per file (the join).
    FILE_OPENS = "file_opens" "_total";
    FILE_OPEN_ERRORS = "file_open_errors" "_total";
    FILE_OPEN_DURATION = "file_open_duration" "_seconds";
    FILE_GET_FMAP = "file_get_fmap" "_total";
    FILE_GET_FMAP_RETRIES = "file_get_fmap_retries" "_total";
    FILE_GET_FMAP_ERRORS = "file_get_fmap_errors" "_total";
    FILE_FMAP = "file_fmap" "_bytes";
    FILE_FMAP_EXTENTS = "file_fmap_extents" "";
    FILE_SIZE = "file_size" "_bytes";
    FILE_READS = "file_reads" "_total";
    FILE_READ = "file_read" "_bytes_total";
    FILE_WRITES = "file_writes" "_total";
    FILE_WRITTEN = "file_written" "_bytes_total";
    FILE_PAGE_CACHE_FAULTS = "file_page_cache_faults" "_total";
    FILE_DAX_FAULTS = "file_dax_faults" "_total";
    FILE_DAX_FAULT_DURATION = "file_dax_fault_duration" "_seconds";
    FILE_LAST_ACCESS_TIMESTAMP = "file_last_access_timestamp" "_seconds";
    FILE_SERIES_FOLDED = "file_series_folded" "";
    JOIN_EVENTS = "join_events" "_total";
    // The FUSE server's own counters.
    SERVER_REQUESTS = "server_requests" "_total";
    SERVER_REQUEST_ERRORS = "server_request_errors" "_total";
    SERVER_MALFORMED_REQUESTS = "server_malformed_requests" "_total";
    SERVER_RECORDS = "server_records" "_total";
    SERVER_REPLY_FAILURES = "server_reply_failures" "_total";
    SERVER_WORKERS = "server_workers" "";
    SERVER_SPLICED_READS = "server_spliced_reads" "_total";
    SERVER_HELPER_WAKEUPS = "server_helper_wakeups" "_total";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_prefixed_and_unique() {
        assert_eq!(FILE_READ.name, "famfs_file_read_bytes_total");
        assert_eq!(
            FUSE_REQUEST_DURATION.name,
            "famfs_fuse_request_duration_seconds"
        );
        for (i, a) in ALL.iter().enumerate() {
            assert!(a.name.starts_with("famfs_") && a.name.contains(a.base));
            for b in &ALL[i + 1..] {
                assert_ne!(a.name, b.name);
                assert_ne!(a.base, b.base);
            }
        }
    }
}
