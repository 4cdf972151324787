//! The daemon's HTTP face locked down, against real components: a real Prometheus 2.42 scrapes a
//! daemon serving a famfs image over TLS with basic auth (its own `scheme: https`, `tls_config`,
//! `basic_auth` settings), an exact per-file value arrives, wrong or missing credentials get 401;
//! `famfs-trace snapshot` and `top` work against it; `--file-labels hash|none` on a real mount; 64 idle
//! sockets from one client do not block another client's scrape; accept errors (EMFILE) back off
//! instead of spinning; a bad web config stops the daemon naming the key.

// Integration tests: a failed step should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::mpsc,
    time::Duration,
};

use famfs_daemon::http::{
    api::FileRow,
    client::{Client, ClientOptions, ClientSecurity},
};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};
use support::{
    DAEMON, GIB, TRACE,
    daemon::Daemon,
    http::{http_fetch, http_get},
    image::{mkfs, put},
    mounts::MountGuard,
    pattern,
    prometheus::Prometheus,
    require_program, require_root, wait_for,
};

const PASSWORD: &str = "correct horse battery staple";

/// A CA and a server certificate for `localhost` and `127.0.0.1`, as PEM files in `dir`:
/// (CA, certificate, key).
fn pki(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name
        .push(DnType::CommonName, "famfs test CA");
    let ca = CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap();
    let mut p =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, &ca).unwrap();
    let w = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    (
        w("ca.pem", &ca.pem()),
        w("server.pem", &cert.pem()),
        w("server-key.pem", &key.serialize_pem()),
    )
}

/// `web.yml` in `dir`: TLS with the files of [`pki`] (relative names, as the toolkit resolves them)
/// and one user `prom` with [`PASSWORD`].
fn web_config(dir: &Path) -> PathBuf {
    let hash = bcrypt::hash(PASSWORD, 6).unwrap();
    let p = dir.join("web.yml");
    std::fs::write(
        &p,
        format!(
            "tls_server_config:\n  cert_file: server.pem\n  key_file: server-key.pem\n\
             basic_auth_users:\n  prom: {hash}\n"
        ),
    )
    .unwrap();
    p
}

/// The crate's client for the secured daemon at `addr`, with `user` (and its password) if given.
fn client(addr: SocketAddr, ca: &Path, user: Option<(&str, &str)>) -> Client {
    let opts = ClientOptions {
        ca_file: Some(ca.to_path_buf()),
        user: user.map(|u| u.0.to_string()),
        password: user.map(|u| u.1.to_string()),
        ..Default::default()
    };
    Client::new(addr, Duration::from_secs(30))
        .unwrap()
        .with_security(ClientSecurity::load(&opts, "127.0.0.1").unwrap())
}

/// A famfs image with `files` in a temp dir, served by `famfs-daemon run --no-probes` with `extra`.
struct Served {
    daemon: Daemon,
    _guard: MountGuard,
    mnt: PathBuf,
    addr: SocketAddr,
    fs_uuid: String,
    dir: tempfile::TempDir,
}

fn serve(files: &[(&str, Vec<u8>)], extra: &[&str]) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let (img_path, mut img) = mkfs(dir.path(), "famfs.img", 4 * GIB);
    for (path, data) in files {
        if let Some((parent, _)) = path.rsplit_once('/') {
            img.mkdir(parent, 0o755, 0, 0, true).unwrap();
        }
        put(&mut img, path, data);
    }
    drop(img);
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let mnt = mnt.canonicalize().unwrap();
    let guard = MountGuard(mnt.clone());
    let daemon = Daemon::serve(dir.path(), &img_path, &mnt, extra);
    let addr = daemon.field("listen").unwrap().parse().unwrap();
    let fs_uuid = daemon.field("fs_uuid").unwrap();
    Served {
        daemon,
        _guard: guard,
        mnt,
        addr,
        fs_uuid,
        dir,
    }
}

/// Open (and close) `path` `n` times.
fn open_n(path: &Path, n: usize) {
    for _ in 0..n {
        drop(std::fs::File::open(path).unwrap());
    }
}

/// Poll `/api/v1/files` through `c` until `path` shows `opens` opens (30 s deadline).
fn wait_opens(c: &Client, path: &str, opens: u64) {
    let mut last = Vec::new();
    let ok = wait_for(Duration::from_secs(30), || {
        last = c
            .get_json::<Vec<FileRow>>("/api/v1/files?sort=path")
            .unwrap();
        last.iter()
            .any(|r| r.path == path && r.opens == opens)
            .then_some(())
    });
    assert!(ok.is_some(), "{path} never showed {opens} opens: {last:#?}");
}

/// A real Prometheus (the support module's) with `scrape_configs` as given; killed on drop.
struct Prom(Prometheus);

impl Prom {
    fn start(scrape_configs: &str) -> Prom {
        let cfg = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n  evaluation_interval: 1s\n\
             scrape_configs:\n{scrape_configs}"
        );
        Prom(Prometheus::start_config(&cfg, &[]))
    }

    fn get(&self, path: &str) -> serde_json::Value {
        let (code, body) = http_get(self.0.addr, path, None);
        assert_eq!(code, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    fn wait_value(&self, promql: &str, want: f64) -> Option<f64> {
        self.0.wait_value(promql, want)
    }

    /// The last scrape error of `job`'s target, once it has one (30 s).
    fn last_error(&self, job: &str) -> String {
        let mut last = String::new();
        wait_for(Duration::from_secs(30), || {
            let v = self.get("/api/v1/targets");
            let t = v["data"]["activeTargets"]
                .as_array()?
                .iter()
                .find(|t| t["labels"]["job"] == job)?
                .clone();
            last = t["lastError"].as_str().unwrap_or("").to_string();
            (!last.is_empty()).then_some(())
        });
        last
    }
}

fn trace(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(TRACE)
        .args(args)
        .env_remove("FAMFS_TRACE_PASSWORD")
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

#[test]
fn prometheus_scrapes_over_tls_with_basic_auth() {
    let t = "prometheus_scrapes_over_tls_with_basic_auth";
    if !require_root(t) || !require_program(t, "prometheus") {
        return;
    }
    let data = pattern(10_000, 3);
    let web_dir = tempfile::tempdir().unwrap();
    let (ca, _, _) = pki(web_dir.path());
    let web = web_config(web_dir.path());
    let s = serve(
        &[("secret.bin", data.clone()), ("other.bin", data)],
        &["--web-config-file", web.to_str().unwrap()],
    );
    s.daemon
        .wait_stderr("web config")
        .map(|l| {
            assert!(
                l.ends_with(": TLS 1.2/1.3 (no client certificates), basic auth (1 user)"),
                "{l}"
            )
        })
        .unwrap();
    open_n(&s.mnt.join("secret.bin"), 3);
    let authed = client(s.addr, &ca, Some(("prom", PASSWORD)));
    wait_opens(&authed, "/secret.bin", 3);

    // Without credentials, or with wrong ones: 401, nothing else.
    for user in [None, Some(("prom", "wrong")), Some(("nobody", PASSWORD))] {
        let r = client(s.addr, &ca, user).fetch("/metrics", None).unwrap();
        assert_eq!(
            (r.status, r.body.as_str()),
            (401, "401 Unauthorized: basic authentication required\n"),
            "{user:?}"
        );
    }
    // Plain HTTP gets no answer at all from the TLS port.
    assert!(http_fetch(s.addr, "/metrics", None).is_err());

    let pw = web_dir.path().join("prom.pw");
    std::fs::write(&pw, PASSWORD).unwrap();
    let target = s.addr.to_string();
    let job = |name: &str, auth: &str| {
        format!(
            "  - job_name: {name}\n    scheme: https\n    tls_config:\n      ca_file: {}\n{auth}    \
             static_configs:\n      - targets: ['{target}']\n",
            ca.display()
        )
    };
    let prom = Prom::start(
        &[
            job(
                "famfs",
                &format!(
                    "    basic_auth:\n      username: prom\n      password_file: {}\n",
                    pw.display()
                ),
            ),
            job(
                "famfs-wrong-password",
                "    basic_auth:\n      username: prom\n      password: wrong\n",
            ),
            job("famfs-no-credentials", ""),
        ]
        .concat(),
    );
    assert_eq!(prom.wait_value("up{job=\"famfs\"}", 1.0), Some(1.0));
    let u = &s.fs_uuid;
    assert_eq!(
        prom.wait_value(
            &format!(
                "famfs_file_opens_total{{job=\"famfs\",fs_uuid=\"{u}\",path=\"/secret.bin\"}}"
            ),
            3.0
        ),
        Some(3.0)
    );
    assert_eq!(
        prom.wait_value(
            "famfs_server_requests_total{job=\"famfs\",opcode=\"OPEN\"}",
            3.0
        ),
        Some(3.0)
    );
    for job in ["famfs-wrong-password", "famfs-no-credentials"] {
        assert_eq!(
            prom.wait_value(&format!("up{{job=\"{job}\"}}"), 0.0),
            Some(0.0)
        );
        assert_eq!(
            prom.last_error(job),
            "server returned HTTP status 401 Unauthorized",
            "{job}"
        );
    }

    famfs_trace_with_credentials(&s, &ca, &pw);
}

/// `famfs-trace snapshot` and `top --once` against the secured daemon of `s` (CA `ca`, user `prom`
/// whose password is in `pw`): the password from the environment or a file; none or a wrong one fails.
fn famfs_trace_with_credentials(s: &Served, ca: &Path, pw: &Path) {
    let target = s.addr.to_string();
    let snap_path = s.dir.path().join("snap.json");
    let out = trace(
        &[
            "snapshot",
            "--addr",
            &target,
            "--ca-file",
            ca.to_str().unwrap(),
            "--user",
            "prom",
            "-o",
            snap_path.to_str().unwrap(),
        ],
        &[("FAMFS_TRACE_PASSWORD", PASSWORD)],
    );
    assert!(out.status.success(), "{out:?}");
    let snap: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&snap_path).unwrap()).unwrap();
    let row = snap["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["path"] == "/secret.bin")
        .unwrap_or_else(|| panic!("{snap}"));
    assert_eq!(row["opens"], 3);
    let out = trace(
        &[
            "top",
            "--once",
            "--interval",
            "0s",
            "--addr",
            &target,
            "--server-name",
            "localhost",
            "--ca-file",
            ca.to_str().unwrap(),
            "--user",
            "prom",
            "--password-file",
            pw.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let frame = String::from_utf8(out.stdout).unwrap();
    assert!(frame.contains("/secret.bin"), "{frame}");
    // No password: refused before any request; a wrong one: the daemon's 401, exit 1.
    let out = trace(
        &[
            "snapshot",
            "--addr",
            &target,
            "--ca-file",
            ca.to_str().unwrap(),
            "--user",
            "prom",
            "-o",
            "-",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "famfs-trace: error: --user needs a password: set $FAMFS_TRACE_PASSWORD or give --password-file\n"
    );
    let out = trace(
        &[
            "snapshot",
            "--addr",
            &target,
            "--ca-file",
            ca.to_str().unwrap(),
            "--user",
            "prom",
            "-o",
            "-",
        ],
        &[("FAMFS_TRACE_PASSWORD", "wrong")],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(": HTTP 401: 401 Unauthorized: basic authentication required"),
        "{err}"
    );
}

#[test]
fn file_labels_hash_and_none_on_a_real_mount() {
    let t = "file_labels_hash_and_none_on_a_real_mount";
    if !require_root(t) {
        return;
    }
    let files = [
        ("private/plan.txt", pattern(5000, 1)),
        ("b.bin", pattern(100, 2)),
    ];
    let plain = |addr| Client::new(addr, Duration::from_secs(30)).unwrap();

    let s = serve(&files, &["--file-labels", "hash"]);
    open_n(&s.mnt.join("private/plan.txt"), 2);
    open_n(&s.mnt.join("b.bin"), 1);
    let c = plain(s.addr);
    // The JSON API keeps paths.
    wait_opens(&c, "/private/plan.txt", 2);
    wait_opens(&c, "/b.bin", 1);
    let text = c.get("/metrics").unwrap();
    let u = &s.fs_uuid;
    for (path, opens) in [("/private/plan.txt", 2), ("/b.bin", 1)] {
        let h = famfs_daemon::metrics::path_hash(u, path);
        assert_eq!(h.len(), 16);
        let line = format!("famfs_file_opens_total{{fs_uuid=\"{u}\",path=\"{h}\"}} {opens}");
        assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
    }
    assert!(
        !text.contains("plan.txt") && !text.contains("b.bin"),
        "a path leaked:\n{text}"
    );
    drop(s);

    let s = serve(&files, &["--file-labels", "none"]);
    open_n(&s.mnt.join("private/plan.txt"), 2);
    let c = plain(s.addr);
    wait_opens(&c, "/private/plan.txt", 2);
    let text = c.get("/metrics").unwrap();
    assert!(
        !text.lines().any(|l| l.contains("famfs_file_")),
        "per-file families with --file-labels none:\n{text}"
    );
    assert!(!text.contains("plan.txt"), "{text}");
    // The aggregates remain, exact: the server answered the two OPENs.
    assert!(
        text.lines()
            .any(|l| l == "famfs_server_requests_total{opcode=\"OPEN\"} 2"),
        "{text}"
    );
}

/// A connection to `addr` from the loopback address `from` (all of 127.0.0.0/8 is loopback here).
fn connect_from(from: [u8; 4], addr: SocketAddr) -> TcpStream {
    use std::os::fd::FromRawFd;
    // SAFETY: socket(2) with constant arguments; the fd is owned by the TcpStream below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
    // SAFETY: fd is a fresh socket nobody else owns.
    let stream = unsafe { TcpStream::from_raw_fd(fd) };
    let sin = |ip: [u8; 4], port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(ip),
        },
        sin_zero: [0; 8],
    };
    let SocketAddr::V4(to) = addr else {
        panic!("IPv4 only")
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    let local = sin(from, 0);
    let remote = sin(to.ip().octets(), to.port());
    // SAFETY: valid sockaddr_in values of the given length, on our socket.
    unsafe {
        assert_eq!(
            libc::bind(fd, (&raw const local).cast(), len),
            0,
            "bind {from:?}: {}",
            std::io::Error::last_os_error()
        );
        assert_eq!(
            libc::connect(fd, (&raw const remote).cast(), len),
            0,
            "connect {addr}: {}",
            std::io::Error::last_os_error()
        );
    }
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream
}

/// One keep-alive `GET /healthz` on `s`: whether the whole `200 ok` came back (false: the server
/// closed the connection unanswered).
fn served(s: &mut TcpStream) -> bool {
    if s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut b).unwrap_or(0) != 1 {
            return false;
        }
        head.push(b[0]);
    }
    let mut body = [0u8; 3];
    s.read_exact(&mut body).is_ok() && head.starts_with(b"HTTP/1.1 200") && &body == b"ok\n"
}

#[test]
fn idle_sockets_from_one_client_do_not_block_another_clients_scrape() {
    let t = "idle_sockets_from_one_client_do_not_block_another_clients_scrape";
    if !require_root(t) || !require_program(t, "prometheus") {
        return;
    }
    // Defaults: 64 connections in all, 8 per client. Idle connections are kept for the test's length
    // (the header timeout also bounds idle keep-alive).
    let daemon = Daemon::start(&["--no-probes", "--http-header-timeout", "300s"]);
    // 64 sockets from 127.0.0.2, each one request and then idle: the first 8 are served and stay
    // open, the other 56 are closed unanswered. (Without the per-client cap all 64 would be held,
    // every slot of the daemon.)
    let mut idle: Vec<TcpStream> = (0..64)
        .map(|_| connect_from([127, 0, 0, 2], daemon.addr))
        .collect();
    let answered: Vec<bool> = idle.iter_mut().map(served).collect();
    assert_eq!(answered.iter().filter(|a| **a).count(), 8, "{answered:?}");
    assert!(answered[..8].iter().all(|a| *a), "{answered:?}");
    // Another client (127.0.0.1) is served on new connections: a real Prometheus started now, and the
    // crate's client.
    let prom = Prom::start(&format!(
        "  - job_name: famfs\n    static_configs:\n      - targets: ['{}']\n",
        daemon.addr
    ));
    assert_eq!(prom.wait_value("up{job=\"famfs\"}", 1.0), Some(1.0));
    assert_eq!(
        prom.wait_value("count(famfs_build_info{job=\"famfs\"})", 1.0),
        Some(1.0)
    );
    assert_eq!(daemon.get("/healthz"), (200, "ok\n".to_string()));
    // The 8 idle connections held their places all along: each still answers.
    for (i, s) in idle.iter_mut().take(8).enumerate() {
        assert!(served(s), "idle connection {i} was closed");
    }
}

/// `famfs-daemon run --no-probes EXTRA…` with stderr lines on a channel: (child, ready line, stderr).
fn spawn_daemon(extra: &[&str]) -> (Child, Option<String>, mpsc::Receiver<String>) {
    let mut child = Command::new(DAEMON)
        .args(["run", "--listen", "127.0.0.1:0", "--no-probes"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (etx, erx) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("[daemon] {l}");
            let _ = etx.send(l);
        }
    });
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = lines
        .by_ref()
        .map_while(Result::ok)
        .find(|l| l.starts_with("famfs-daemon: ready"));
    std::thread::spawn(move || for _ in lines {});
    (child, ready, erx)
}

/// Wait (30 s) for a stderr line containing `needle`.
fn wait_line(rx: &mpsc::Receiver<String>, needle: &str) -> String {
    let mut seen = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(l) if l.contains(needle) => return l,
            Ok(l) => seen.push(l),
            Err(_) => panic!("no stderr line with {needle:?}; saw {seen:#?}"),
        }
    }
}

#[test]
fn a_bad_web_config_stops_the_daemon_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let web = dir.path().join("web.yml");
    std::fs::write(&web, "tls_server_config:\n  cert_file: server.pem\n").unwrap();
    let (mut child, ready, stderr) = spawn_daemon(&["--web-config-file", web.to_str().unwrap()]);
    assert_eq!(ready, None);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(1));
    let line = wait_line(&stderr, "error");
    assert_eq!(
        line,
        format!(
            "famfs-daemon: error: web config {}: tls_server_config: missing one of key or key_file",
            web.display()
        )
    );
}

/// CPU time (user + system, clock ticks) the process has used.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which ends with ')'): utime is the 12th, stime the 13th.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

fn set_nofile(pid: u32, soft: u64, hard: u64) {
    let lim = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: prlimit(2) on our own child, with a valid rlimit and no old-value pointer.
    let r = unsafe {
        libc::prlimit(
            pid as libc::pid_t,
            libc::RLIMIT_NOFILE,
            &lim,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(r, 0, "prlimit: {}", std::io::Error::last_os_error());
}

#[test]
fn accept_errors_back_off_instead_of_spinning() {
    let (mut child, ready, stderr) = spawn_daemon(&[]);
    let ready = ready.expect("ready line");
    let addr: SocketAddr = ready
        .split_whitespace()
        .find_map(|w| w.strip_prefix("listen="))
        .unwrap()
        .parse()
        .unwrap();
    let pid = child.id();
    // No descriptor left for accept(2): the limit at the lowest free descriptor number, so every
    // pending connection gets EMFILE.
    let fds: std::collections::BTreeSet<u64> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_str().unwrap().parse().unwrap())
        .collect();
    let open = (0..).find(|n| !fds.contains(n)).unwrap();
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: reading our child's limit into a valid rlimit.
    let r = unsafe {
        libc::prlimit(
            pid as libc::pid_t,
            libc::RLIMIT_NOFILE,
            std::ptr::null(),
            &mut old,
        )
    };
    assert_eq!(r, 0, "prlimit: {}", std::io::Error::last_os_error());
    set_nofile(pid, open, old.rlim_max);
    let mut pending = TcpStream::connect(addr).unwrap();
    pending
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    pending
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let line = wait_line(&stderr, "HTTP accept failed");
    assert!(
        line.ends_with(
            "HTTP accept failed: Too many open files (os error 24); retrying after pauses of 10ms doubling to 1s"
        ),
        "{line}"
    );
    // A measurement window, not a synchronisation: a spinning accept loop burns a whole core
    // (about 100 ticks a second); backing off (10 ms doubling to 1 s) costs next to nothing.
    let before = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(2));
    let used = cpu_ticks(pid) - before;
    assert!(used <= 10, "{used} clock ticks in 2 s while accept fails");
    // Descriptors again: the pending connection is taken (within the longest pause) and answered.
    set_nofile(pid, old.rlim_cur, old.rlim_max);
    let mut answer = String::new();
    pending.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.ends_with("\r\n\r\nok\n"), "{answer}");
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
}
