//! The terminal side of the `famfs-trace top` tests: a private tmux server with one fixed-size window
//! running a bare bash, polled with `capture-pane` until a condition holds (against a deadline, never
//! a fixed sleep), killed (and its socket removed) on drop; and the parser of the file table rows
//! that `top` draws (on a pane or in a `--once` frame). It judges no screen: the tests do.

use std::{
    fs,
    process::{Command, Output},
    time::Duration,
};

use super::{DEADLINE, wait_for_every};

/// How often a pane is captured while waiting (each capture starts a tmux client).
const CAPTURE_STEP: Duration = Duration::from_millis(20);

/// A private tmux server (its own `-L` socket, no config) with one 120x40 session running a bare bash;
/// killed on drop.
pub struct Tmux {
    socket: String,
}

impl Tmux {
    pub fn start(name: &str) -> Tmux {
        let t = Tmux {
            socket: format!("famfs-top-test-{}-{name}", std::process::id()),
        };
        let out = t.cmd(&[
            "new-session",
            "-d",
            "-s",
            "t",
            "-x",
            "120",
            "-y",
            "40",
            "-e",
            "PS1=READY$ ",
            "bash",
            "--norc",
            "--noprofile",
        ]);
        assert!(out.status.success(), "tmux new-session: {out:?}");
        t.wait_screen("the shell prompt", |s| s.contains("READY$"));
        t
    }

    pub fn cmd(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args)
            .output()
            .expect("run tmux")
    }

    pub fn screen(&self) -> String {
        let out = self.cmd(&["capture-pane", "-p", "-t", "t"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn pane_var(&self, var: &str) -> String {
        let out = self.cmd(&["display-message", "-p", "-t", "t", &format!("#{{{var}}}")]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Type `line` literally, then Enter.
    pub fn type_line(&self, line: &str) {
        self.type_text(line);
        self.key("Enter");
    }

    /// Type `text` literally (no key-name interpretation).
    pub fn type_text(&self, text: &str) {
        assert!(
            self.cmd(&["send-keys", "-t", "t", "-l", text])
                .status
                .success()
        );
    }

    /// Press one key (a tmux key name: `q`, `Enter`, `Escape`, ...).
    pub fn key(&self, k: &str) {
        assert!(self.cmd(&["send-keys", "-t", "t", k]).status.success());
    }

    /// Poll the pane until `ok` holds (deadline [`DEADLINE`]); returns that screen, or panics with
    /// the last one.
    pub fn wait_screen(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let mut last = String::new();
        wait_for_every(DEADLINE, CAPTURE_STEP, || {
            let s = self.screen();
            if ok(&s) {
                return Some(s);
            }
            last = s;
            None
        })
        .unwrap_or_else(|| panic!("waiting for {what}; the pane shows:\n{last}"))
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        // kill-server leaves the socket file behind: remove it too.
        let socket = self.pane_var("socket_path");
        let _ = self.cmd(&["kill-server"]);
        if socket.contains(&self.socket) {
            let _ = fs::remove_file(&socket);
        }
    }
}

/// The rows of the file table in a `top` screen: every line inside the panel after its `PATH`
/// header, split into whitespace-separated cells (paths have no spaces), borders removed.
pub fn file_rows(screen: &str) -> Vec<Vec<String>> {
    screen
        .lines()
        .skip_while(|l| !l.starts_with("│PATH"))
        .skip(1)
        .take_while(|l| l.starts_with('│'))
        .map(|l| {
            l.trim_matches('│')
                .split_whitespace()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .filter(|cells| !cells.is_empty())
        .collect()
}
