//! Reading the guest's serial console: `RESULT <check> <what> k=v ...` lines, `VMTEST EXIT <check> <rc>`,
//! the probe table (`PROBE ...`) and Prometheus samples printed as `METRIC ...` / `FMETRIC ...`.
//!
//! Owns the console's line syntax only; what values are expected is `eval`'s business. Also used by the
//! guest to read the daemon's /metrics text (same sample syntax).

use std::collections::BTreeMap;

/// The `k=v` fields of one `RESULT` line.
pub(super) type Fields = BTreeMap<String, String>;
/// Every `RESULT` line's fields by (check, what).
pub(super) type Results = BTreeMap<(String, String), Fields>;

/// `RESULT <check> <what> k=v ...` lines by (check, what).
pub(super) fn results(console: &str) -> Results {
    let mut out = Results::new();
    for line in console.lines() {
        let Some(rest) = line.strip_prefix("RESULT ") else {
            continue;
        };
        let mut w = rest.split_whitespace();
        let (Some(check), Some(what)) = (w.next(), w.next()) else {
            continue;
        };
        let e = out.entry((check.into(), what.into())).or_default();
        for kv in w {
            if let Some((k, v)) = kv.split_once('=') {
                e.insert(k.into(), v.into());
            }
        }
    }
    out
}

/// The value of metric `name` (from the first daemon's `METRIC` lines) whose labels include every
/// `(k, v)`.
pub(super) fn metric(console: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    metric_at(console, "METRIC ", name, labels)
}

/// The value of metric `name` on console lines starting with `prefix` whose labels include every
/// `(k, v)`; the first such line counts.
pub(super) fn metric_at(
    console: &str,
    prefix: &str,
    name: &str,
    labels: &[(&str, &str)],
) -> Option<f64> {
    for line in console.lines() {
        let Some(rest) = line.strip_prefix(prefix) else {
            continue;
        };
        let Some(rest) = rest.strip_prefix(name) else {
            continue;
        };
        let (lbl, value) = match rest.strip_prefix('{') {
            Some(r) => match r.split_once('}') {
                Some(x) => x,
                None => continue,
            },
            // Another family whose name starts with `name` (`name_count`, ...).
            None if !rest.starts_with(' ') => continue,
            None => ("", rest),
        };
        if labels
            .iter()
            .all(|(k, v)| lbl.split(',').any(|kv| kv == format!("{k}=\"{v}\"")))
        {
            return value.split_whitespace().next()?.parse().ok();
        }
    }
    None
}

/// `(opcode, value)` of every console line `<prefix>...opcode="X"...} value`, e.g. the per-opcode
/// samples of one family (and connection).
pub(super) fn opcode_samples(console: &str, prefix: &str) -> Vec<(String, f64)> {
    console
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(prefix)?;
            let (labels, value) = rest.split_once("} ")?;
            let op = labels
                .split(',')
                .find_map(|kv| kv.strip_prefix("opcode=\""))?
                .trim_end_matches('"');
            Some((op.to_string(), value.trim().parse().ok()?))
        })
        .collect()
}

/// Problems with check `check`'s exit: none when it printed `VMTEST EXIT <check> 0`.
pub(super) fn exited_ok(console: &str, check: &str) -> Vec<String> {
    let want = format!("VMTEST EXIT {check} ");
    match console.lines().find_map(|l| l.strip_prefix(&want)) {
        Some("0") => Vec::new(),
        Some(rc) => vec![format!("{check} exited with {rc}")],
        None => vec![format!("{check} never finished")],
    }
}

/// Probe table row (`PROBE <program> <kind> <target> <state...>`): (kind, state).
pub(super) fn probe_row(console: &str, program: &str) -> Option<(String, String)> {
    console.lines().find_map(|l| {
        let rest = l.strip_prefix("PROBE ")?;
        let mut w = rest.split_whitespace();
        if w.next()? != program {
            return None;
        }
        let kind = w.next()?.to_string();
        let _target = w.next()?;
        Some((kind, w.collect::<Vec<_>>().join(" ")))
    })
}

#[cfg(test)]
mod tests {
    use famfs_common::metric_names::SERVER_REQUESTS;

    use super::*;

    #[test]
    fn metric_at_skips_longer_names_and_other_prefixes() {
        let s = SERVER_REQUESTS.name;
        let console = format!(
            "METRIC x_count{{a=\"1\"}} 5\nFMETRIC x_count 7\nFMETRIC x 3\n\
             FMETRIC {s}{{opcode=\"OPEN\"}} 15\n\
             FMETRIC {s}{{opcode=\"READ\"}} 2\n"
        );
        let console = console.as_str();
        assert_eq!(metric_at(console, "FMETRIC ", "x", &[]), Some(3.0));
        assert_eq!(metric_at(console, "FMETRIC ", "x_count", &[]), Some(7.0));
        assert_eq!(metric(console, "x_count", &[("a", "1")]), Some(5.0));
        assert_eq!(metric(console, "x", &[]), None);
        assert_eq!(
            opcode_samples(console, &format!("FMETRIC {s}{{")),
            vec![("OPEN".to_string(), 15.0), ("READ".to_string(), 2.0)]
        );
    }
}
