//! `famfs-trace probes`: load every probe on the running kernel and print the table.

use std::{io::Write, process::ExitCode};

use clap::Args;

use crate::probes::{ProbeConfig, ProbeState, ProbeStatus, Probes};

#[derive(Debug, Args)]
pub struct ProbesArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Render the probe table as aligned text.
pub fn render_table(status: &[ProbeStatus]) -> String {
    let w_prog = status
        .iter()
        .map(|s| s.program.len())
        .max()
        .unwrap_or(0)
        .max(7);
    let w_tgt = status
        .iter()
        .map(|s| s.target.len())
        .max()
        .unwrap_or(0)
        .max(6);
    let kind_of = |s: &ProbeStatus| {
        serde_json::to_value(s.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    };
    let w_kind = status
        .iter()
        .map(|s| kind_of(s).len())
        .max()
        .unwrap_or(0)
        .max(4);
    let mut out = format!(
        "{:<w_prog$}  {:<w_kind$}  {:<w_tgt$}  STATE\n",
        "PROGRAM", "KIND", "TARGET"
    );
    for s in status {
        let state = match &s.state {
            ProbeState::Attached => "attached".to_string(),
            ProbeState::Unavailable(r) => format!("unavailable: {r}"),
        };
        out.push_str(&format!(
            "{:<w_prog$}  {:<w_kind$}  {:<w_tgt$}  {state}\n",
            s.program,
            kind_of(s),
            s.target
        ));
    }
    out
}

pub fn run(args: ProbesArgs) -> anyhow::Result<ExitCode> {
    let probes = Probes::load(&ProbeConfig {
        bpf_stats: false,
        ..Default::default()
    });
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(probes.status())?)?;
    } else {
        out.write_all(render_table(probes.status()).as_bytes())?;
    }
    Ok(ExitCode::SUCCESS)
}
