//! Text for values shown to operators (durations, counts, bytes, rates, ratios, ages), shared by the
//! `top` renderer and the `diff` report so both print a value the same way. Pure functions.

/// Seconds as `850ns`, `12.3µs`, `4.56ms`, `1.23s`.
pub fn fmt_secs(s: f64) -> String {
    if s < 1e-6 {
        format!("{:.0}ns", s * 1e9)
    } else if s < 1e-3 {
        format!("{:.1}µs", s * 1e6)
    } else if s < 1.0 {
        format!("{:.2}ms", s * 1e3)
    } else {
        format!("{s:.2}s")
    }
}

pub fn fmt_opt_secs(s: Option<f64>) -> String {
    s.map_or_else(|| "-".to_string(), fmt_secs)
}

/// A count, shortened past a million (`1.2M`, `3.4G`).
pub fn fmt_count(n: u64) -> String {
    if n < 1_000_000 {
        n.to_string()
    } else if n < 1_000_000_000 {
        format!("{:.1}M", n as f64 / 1e6)
    } else {
        format!("{:.1}G", n as f64 / 1e9)
    }
}

/// Bytes: exact below 10 KiB, then `12.5K`, `3.0M` (binary units).
pub fn fmt_bytes(n: u64) -> String {
    if n < 10 * 1024 {
        n.to_string()
    } else if n < 10 << 20 {
        format!("{:.1}K", n as f64 / 1024.0)
    } else {
        format!("{:.1}M", n as f64 / (1u64 << 20) as f64)
    }
}

/// Per-second rate with one decimal, `-` when unknown.
pub fn fmt_rate(r: Option<f64>) -> String {
    r.map_or_else(|| "-".to_string(), |r| format!("{r:.1}"))
}

/// A ratio as a percentage with one decimal, `-` when unknown.
pub fn fmt_pct(r: Option<f64>) -> String {
    r.map_or_else(|| "-".to_string(), |r| format!("{:.1}%", r * 100.0))
}

/// An age: `0.4s`, `12s`, `5m`, `3h`, `2d`; `-` when unknown.
pub fn fmt_age(s: Option<f64>) -> String {
    match s {
        None => "-".into(),
        Some(s) if s < 10.0 => format!("{s:.1}s"),
        Some(s) if s < 60.0 => format!("{s:.0}s"),
        Some(s) if s < 3600.0 => format!("{:.0}m", (s / 60.0).floor()),
        Some(s) if s < 86400.0 => format!("{:.0}h", (s / 3600.0).floor()),
        Some(s) => format!("{:.0}d", (s / 86400.0).floor()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(fmt_secs(850e-9), "850ns");
        assert_eq!(fmt_secs(12.34e-6), "12.3µs");
        assert_eq!(fmt_secs(4.561e-3), "4.56ms");
        assert_eq!(fmt_secs(1.234), "1.23s");
        assert_eq!(fmt_opt_secs(None), "-");
        assert_eq!(fmt_count(999_999), "999999");
        assert_eq!(fmt_count(1_260_000), "1.3M");
        assert_eq!(fmt_count(3_400_000_000), "3.4G");
        assert_eq!(fmt_bytes(10239), "10239");
        assert_eq!(fmt_bytes(12800), "12.5K");
        assert_eq!(fmt_bytes(3 << 20 << 2), "12.0M");
        assert_eq!(fmt_rate(Some(2.26)), "2.3");
        assert_eq!(fmt_rate(None), "-");
        assert_eq!(fmt_pct(Some(0.25)), "25.0%");
        assert_eq!(fmt_age(Some(0.44)), "0.4s");
        assert_eq!(fmt_age(Some(42.0)), "42s");
        assert_eq!(fmt_age(Some(185.0)), "3m");
        assert_eq!(fmt_age(Some(7300.0)), "2h");
        assert_eq!(fmt_age(Some(200000.0)), "2d");
        assert_eq!(fmt_age(None), "-");
    }
}
