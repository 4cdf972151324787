//! `famfs-trace probes`: load every probe on the running kernel and print the table (or its JSON). Owns
//! only the command; the rows, their spelling and the table layout are `probes::status`.

use std::{io::Write, process::ExitCode};

use clap::Args;

use crate::probes::{ProbeConfig, Probes, render_table};

#[derive(Debug, Args)]
pub struct ProbesArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probes::{ProbeKind, ProbeState, ProbeStatus};

    #[test]
    fn table_aligns_columns_to_the_widest_cell() {
        let rows = [
            ProbeStatus {
                program: "fuse_request_send",
                kind: ProbeKind::RawTracepoint,
                target: "fuse:fuse_request_send".into(),
                purpose: "",
                state: ProbeState::Attached,
            },
            ProbeStatus {
                program: "x",
                kind: ProbeKind::Function,
                target: "x".into(),
                purpose: "",
                state: ProbeState::Unavailable("gone".into()),
            },
        ];
        assert_eq!(
            render_table(&rows),
            "PROGRAM            KIND            TARGET                  STATE\n\
             fuse_request_send  raw_tracepoint  fuse:fuse_request_send  attached\n\
             x                  function        x                       unavailable: gone\n"
        );
        assert_eq!(render_table(&[]), "PROGRAM  KIND  TARGET  STATE\n");
    }
}
