//! famfs-trace eBPF programs. Built for `bpfel-unknown-none` by famfs-daemon's build.rs and embedded there.
//!
//! One module per program family; `maps` owns every map and load-time global, `filter` the connection
//! filter and health counters. Programs aggregate in kernel maps; nothing here allocates or loops unbounded.
//! Depends on `aya-ebpf` and the shapes of `famfs-common` only; must not define a shape user space reads
//! (those belong to `famfs-common`).
#![no_std]
#![no_main]
// The BPF target's `core` has no atomic RMW methods; the intrinsic lowers to BPF_ATOMIC add. The crate is
// built with RUSTC_BOOTSTRAP=1 (see famfs-daemon/build.rs), which makes this feature available on stable.
#![feature(core_intrinsics)]
#![allow(internal_features)]

mod fault;
mod filter;
mod fuse_request;
mod kfunc;
mod maps;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
