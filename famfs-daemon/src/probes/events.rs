//! The per-event ring buffer reader: OPEN/GET_FMAP completions, unmatched request ends, slow faults.
//! Polls the ring buffer's fd with a timeout so a consumer thread can stop promptly; decodes records
//! into [`Event`] values without allocating.

use std::os::fd::AsRawFd;

use aya::maps::{MapData, RingBuf};
use famfs_common::event::Event;

pub struct EventReader {
    rb: RingBuf<MapData>,
    /// Records of the wrong size (object/daemon mismatch); counted, never fatal.
    pub malformed: u64,
}

impl std::fmt::Debug for EventReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventReader")
            .field("malformed", &self.malformed)
            .finish()
    }
}

impl EventReader {
    pub(crate) fn new(rb: RingBuf<MapData>) -> Self {
        Self { rb, malformed: 0 }
    }

    /// Wait up to `timeout_ms` for records, then hand every available one to `f`. Returns how many.
    pub fn poll(&mut self, timeout_ms: i32, mut f: impl FnMut(&Event)) -> usize {
        let mut pfd = libc::pollfd {
            fd: self.rb.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the duration of the call.
        unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
        let mut n = 0;
        while let Some(item) = self.rb.next() {
            if item.len() != size_of::<Event>() {
                self.malformed += 1;
                continue;
            }
            // SAFETY: the record holds exactly size_of::<Event>() bytes; Event is plain integers
            // (any bit pattern valid); read_unaligned copes with the ring buffer's 8-byte alignment.
            let ev = unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<Event>()) };
            f(&ev);
            n += 1;
        }
        n
    }
}
