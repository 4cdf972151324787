//! The probe table's rows: how each probe hooks into the kernel ([`ProbeKind`]), whether it attached
//! ([`ProbeState`]) and the row itself ([`ProbeStatus`]). Owns the spelling of kinds and states in the
//! JSON, the `famfs-trace probes` table (and its layout, [`render_table`]) and the selftest lines.
//! Must not load or attach anything.

use std::fmt;

use serde::{Serialize, Serializer};

/// How a probe hooks into the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeKind {
    Tracepoint,
    /// Raw tracepoint: the program gets the tracepoint's arguments (the kernel objects), not its record.
    RawTracepoint,
    /// BTF tracepoint (`tp_btf`): a raw tracepoint whose arguments the verifier types from the kernel's
    /// BTF, so the program reads their fields by direct loads.
    BtfTracepoint,
    /// fentry + fexit (BPF trampoline).
    Fentry,
    /// kprobe + kretprobe.
    Kprobe,
    /// A kernel-function probe that attached neither way.
    Function,
}

impl ProbeKind {
    /// The kind's name in JSON and in the probe table.
    pub const fn as_str(self) -> &'static str {
        match self {
            ProbeKind::Tracepoint => "tracepoint",
            ProbeKind::RawTracepoint => "raw_tracepoint",
            ProbeKind::BtfTracepoint => "tp_btf",
            ProbeKind::Fentry => "fentry",
            ProbeKind::Kprobe => "kprobe",
            ProbeKind::Function => "function",
        }
    }
}

impl Serialize for ProbeKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", content = "reason", rename_all = "snake_case")]
pub enum ProbeState {
    Attached,
    Unavailable(String),
}

/// `attached` or `unavailable: <reason>`.
impl fmt::Display for ProbeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeState::Attached => f.write_str("attached"),
            ProbeState::Unavailable(r) => write!(f, "unavailable: {r}"),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct ProbeStatus {
    pub program: &'static str,
    pub kind: ProbeKind,
    pub target: String,
    pub purpose: &'static str,
    #[serde(flatten)]
    pub state: ProbeState,
}

/// Render the probe table as aligned text.
pub fn render_table(status: &[ProbeStatus]) -> String {
    let width = |min: usize, f: &dyn Fn(&ProbeStatus) -> usize| {
        status.iter().map(f).max().unwrap_or(0).max(min)
    };
    let w_prog = width(7, &|s| s.program.len());
    let w_kind = width(4, &|s| s.kind.as_str().len());
    let w_tgt = width(6, &|s| s.target.len());
    let mut out = format!(
        "{:<w_prog$}  {:<w_kind$}  {:<w_tgt$}  STATE\n",
        "PROGRAM", "KIND", "TARGET"
    );
    for s in status {
        out.push_str(&format!(
            "{:<w_prog$}  {:<w_kind$}  {:<w_tgt$}  {}\n",
            s.program,
            s.kind.as_str(),
            s.target,
            s.state
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_serialize_as_their_names() {
        for k in [
            ProbeKind::Tracepoint,
            ProbeKind::RawTracepoint,
            ProbeKind::BtfTracepoint,
            ProbeKind::Fentry,
            ProbeKind::Kprobe,
            ProbeKind::Function,
        ] {
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
    }

    #[test]
    fn rows_serialize_flat_with_state_and_reason() {
        let row = ProbeStatus {
            program: "p",
            kind: ProbeKind::RawTracepoint,
            target: "c:e".into(),
            purpose: "why",
            state: ProbeState::Unavailable("gone".into()),
        };
        assert_eq!(
            serde_json::to_string(&row).unwrap(),
            r#"{"program":"p","kind":"raw_tracepoint","target":"c:e","purpose":"why","state":"unavailable","reason":"gone"}"#
        );
        assert_eq!(row.state.to_string(), "unavailable: gone");
        assert_eq!(ProbeState::Attached.to_string(), "attached");
    }
}
