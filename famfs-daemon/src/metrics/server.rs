//! Collector for the FUSE server's own view of its traffic ([`SessionStats`]): per-opcode requests and
//! errors as the server answered them (famfs opcodes named by the negotiated dialect), malformed
//! requests, request records handed to the join or dropped, and failed replies.
//!
//! Owns only the encoding of those counters; it reads atomics and never blocks a worker. The kernel's
//! view of the same requests is `kernel`'s (`famfs_fuse_*`), the per-file view `files`'.

use std::{borrow::Cow, sync::Arc};

use famfs_common::metric_names::{
    SERVER_HELPER_WAKEUPS, SERVER_MALFORMED_REQUESTS, SERVER_RECORDS, SERVER_REPLY_FAILURES,
    SERVER_REQUEST_ERRORS, SERVER_REQUESTS, SERVER_SPLICED_READS, SERVER_WORKERS,
};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, NoLabelSet},
    metrics::MetricType,
};

use super::kernel::opcode_label;
use crate::fuse::SessionStats;

/// The server half of the metrics: one session's counters and its famfs opcode numbers.
#[derive(Debug)]
pub struct ServerCollector {
    stats: Arc<SessionStats>,
    /// `(GET_FMAP, GET_DAXDEV)` opcodes when famfs mode was negotiated.
    famfs_ops: Option<(u32, u32)>,
}

impl ServerCollector {
    pub fn new(stats: Arc<SessionStats>, famfs_ops: Option<(u32, u32)>) -> Self {
        ServerCollector { stats, famfs_ops }
    }

    fn label(&self, op: u32) -> Cow<'static, str> {
        match self.famfs_ops {
            Some((fmap, _)) if op == fmap => Cow::Borrowed("GET_FMAP"),
            Some((_, dax)) if op == dax => Cow::Borrowed("GET_DAXDEV"),
            _ => opcode_label(op),
        }
    }
}

impl Collector for ServerCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.stats;
        let mut m = encoder.encode_descriptor(
            SERVER_REQUESTS.base,
            "FUSE requests the server answered (or consumed, for FORGET), by opcode",
            None,
            MetricType::Counter,
        )?;
        for (op, n, _) in s.per_opcode() {
            m.encode_family(&[("opcode", self.label(op))])?
                .encode_counter::<NoLabelSet, _, u64>(&n, None)?;
        }
        if s.requests_other() > 0 {
            m.encode_family(&[("opcode", "other")])?
                .encode_counter::<NoLabelSet, _, u64>(&s.requests_other(), None)?;
        }
        let mut m = encoder.encode_descriptor(
            SERVER_REQUEST_ERRORS.base,
            "FUSE requests the server answered with an error, by opcode",
            None,
            MetricType::Counter,
        )?;
        for (op, _, e) in s.per_opcode() {
            m.encode_family(&[("opcode", self.label(op))])?
                .encode_counter::<NoLabelSet, _, u64>(&e, None)?;
        }
        if s.errors_other() > 0 {
            m.encode_family(&[("opcode", "other")])?
                .encode_counter::<NoLabelSet, _, u64>(&s.errors_other(), None)?;
        }
        let mut m = encoder.encode_descriptor(
            SERVER_MALFORMED_REQUESTS.base,
            "Requests rejected as malformed (short, wrong length, bad body)",
            None,
            MetricType::Counter,
        )?;
        m.encode_counter::<NoLabelSet, _, u64>(&s.malformed(), None)?;
        let mut m = encoder.encode_descriptor(
            SERVER_RECORDS.base,
            "Per-request records for the join: sent, or dropped because its queue was full",
            None,
            MetricType::Counter,
        )?;
        m.encode_family(&[("outcome", "sent")])?
            .encode_counter::<NoLabelSet, _, u64>(&s.records_sent(), None)?;
        m.encode_family(&[("outcome", "dropped")])?
            .encode_counter::<NoLabelSet, _, u64>(&s.records_dropped(), None)?;
        let mut m = encoder.encode_descriptor(
            SERVER_REPLY_FAILURES.base,
            "Replies the kernel did not take: interrupted (request aborted meanwhile) or failed",
            None,
            MetricType::Counter,
        )?;
        m.encode_family(&[("reason", "interrupted")])?
            .encode_counter::<NoLabelSet, _, u64>(&s.replies_interrupted(), None)?;
        m.encode_family(&[("reason", "failed")])?
            .encode_counter::<NoLabelSet, _, u64>(&s.reply_failures(), None)?;
        let mut m = encoder.encode_descriptor(
            SERVER_WORKERS.base,
            "Server worker threads, and how many serve on their own cloned /dev/fuse fd",
            None,
            MetricType::Gauge,
        )?;
        m.encode_family(&[("fd", "cloned")])?
            .encode_gauge(&(s.cloned_fds() as i64))?;
        m.encode_family(&[("fd", "shared")])?
            .encode_gauge(&(s.workers().saturating_sub(s.cloned_fds()) as i64))?;
        let mut m = encoder.encode_descriptor(
            SERVER_SPLICED_READS.base,
            "READ replies offered for splicing from the image: spliced into /dev/fuse, or copied \
             after all (larger than the worker's pipe, or a short splice)",
            None,
            MetricType::Counter,
        )?;
        m.encode_family(&[("outcome", "spliced")])?
            .encode_counter::<NoLabelSet, _, u64>(&s.spliced_replies(), None)?;
        m.encode_family(&[("outcome", "copied")])?
            .encode_counter::<NoLabelSet, _, u64>(&s.splice_fallbacks(), None)?;
        encoder
            .encode_descriptor(
                SERVER_HELPER_WAKEUPS.base,
                "Times an on-demand worker was woken because requests queued behind the one being \
                 served",
                None,
                MetricType::Counter,
            )?
            .encode_counter::<NoLabelSet, _, u64>(&s.helper_wakeups(), None)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Format, Metrics};

    #[test]
    fn famfs_opcodes_are_named_by_the_dialect_and_counts_are_exact() {
        let stats = Arc::new(SessionStats::default());
        for _ in 0..3 {
            stats.count_request(14);
        }
        stats.count_request(54);
        stats.count_error(54);
        stats.count_request(200);
        stats
            .records_sent
            .fetch_add(5, std::sync::atomic::Ordering::Relaxed);
        let mut m = Metrics::new(None, None);
        m.add_server(stats, Some((54, 55)));
        let text = m.render(Format::PrometheusText).expect("render");
        for line in [
            "famfs_server_requests_total{opcode=\"OPEN\"} 3",
            "famfs_server_requests_total{opcode=\"GET_FMAP\"} 1",
            "famfs_server_requests_total{opcode=\"other\"} 1",
            "famfs_server_request_errors_total{opcode=\"GET_FMAP\"} 1",
            "famfs_server_request_errors_total{opcode=\"OPEN\"} 0",
            "famfs_server_records_total{outcome=\"sent\"} 5",
            "famfs_server_records_total{outcome=\"dropped\"} 0",
            "famfs_server_malformed_requests_total 0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }
}
