//! The process's heap policy (glibc malloc): what keeps a daemon that answers multi-megabyte scrapes
//! from keeping those megabytes resident afterwards.
//!
//! glibc raises its mmap threshold to the size of every large block freed (up to 32 MiB), so after the
//! first multi-megabyte `/metrics` body or file listing, such buffers come from the heap arenas (one per
//! thread that allocates, up to 8 per core) and stay resident when freed. [`tune`] pins the threshold
//! at 256 KiB (large buffers are mapped and unmapped, returned to the kernel on free) and caps the arenas
//! at 2 (the HTTP runtime's workers); [`release_free`] hands the free pages inside the arenas back after
//! an answer that made many small blocks (a listing of every file). Owns only these calls; no other
//! state. A no-op on other C libraries.

/// Large blocks (≥ this) are mapped on their own and unmapped when freed.
const MMAP_THRESHOLD: i32 = 256 << 10;
/// Heap arenas at most.
const ARENA_MAX: i32 = 2;

/// Set the heap policy. Call once at start-up, before other threads exist.
pub fn tune() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes malloc's parameters; it is called before any other thread runs.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_ARENA_MAX, ARENA_MAX);
    }
}

/// Give free heap pages back to the kernel (all arenas).
pub fn release_free() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim is thread-safe and only releases memory malloc holds free.
    unsafe {
        libc::malloc_trim(0);
    }
}
