//! Builds the eBPF object (`famfs-ebpf`) for `bpfel-unknown-none` with aya-build on the pinned stable
//! toolchain (`RUSTC_BOOTSTRAP=1`, `-Z build-std=core`) and leaves it in OUT_DIR for `include_bytes!`.
//! A missing eBPF toolchain stops the build with one message naming the setup command.

use std::{path::Path, process::Command};

const TOOLCHAIN: &str = "1.95.0";

fn missing(what: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "\n\nfamfs-trace: the eBPF toolchain is incomplete: {what}.\nRun `cargo xtask setup` once \
         (installs rust-src, bpf-linker 0.10.0 and the test packages), then build again.\n"
    )
}

fn main() -> anyhow::Result<()> {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR")?;
    let ebpf_dir = Path::new(&manifest_dir).join("../famfs-ebpf");
    let common_dir = Path::new(&manifest_dir).join("../famfs-common");
    println!("cargo:rerun-if-changed={}", common_dir.display());
    println!("cargo:rerun-if-env-changed=AYA_BUILD_SKIP");

    if std::env::var_os("AYA_BUILD_SKIP").is_none() {
        let linker_ok = Command::new("bpf-linker")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !linker_ok {
            return Err(missing("`bpf-linker` is not on PATH"));
        }
        let sysroot = Command::new("rustup")
            .args(["run", TOOLCHAIN, "rustc", "--print", "sysroot"])
            .output();
        let has_src = sysroot.is_ok_and(|o| {
            let root = String::from_utf8_lossy(&o.stdout).trim().to_string();
            Path::new(&root)
                .join("lib/rustlib/src/rust/library/core")
                .is_dir()
        });
        if !has_src {
            return Err(missing(&format!(
                "the `rust-src` component of toolchain {TOOLCHAIN} is not installed"
            )));
        }
    }

    // SAFETY: the build script is single-threaded at this point; nothing reads the environment concurrently.
    unsafe { std::env::set_var("RUSTC_BOOTSTRAP", "1") };
    let ebpf_dir = ebpf_dir.canonicalize()?;
    let pkg = aya_build::Package {
        name: "famfs-ebpf",
        root_dir: ebpf_dir
            .to_str()
            .ok_or_else(|| anyhow::anyhow!("non-UTF-8 path"))?,
        ..Default::default()
    };
    aya_build::build_ebpf([pkg], aya_build::Toolchain::Custom(TOOLCHAIN))
}
