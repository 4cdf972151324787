//! Worker gating: with on-demand workers one worker (the lead) blocks reading `/dev/fuse`, and the
//! others (helpers) wait here, off the device, until the lead sees another request queued behind
//! the one it took. A helper then reads without blocking until the queue is empty and parks again.
//! One request stream is served by one thread (no wake-ups on the reader's CPU); concurrent
//! streams bring in helpers.
//!
//! Owns: the parked-helper count, wake tokens and the end flag. Must not read or write the channel
//! (that is `worker`).

use std::sync::{
    Condvar, Mutex,
    atomic::{AtomicUsize, Ordering},
};

#[derive(Default)]
struct State {
    tokens: usize,
    ended: bool,
}

/// Where helpers wait for work.
#[derive(Default)]
pub(super) struct Gate {
    parked: AtomicUsize,
    state: Mutex<State>,
    cv: Condvar,
}

impl Gate {
    /// Whether a helper is parked (a relaxed load: the lead's per-request check).
    pub(super) fn has_parked(&self) -> bool {
        self.parked.load(Ordering::Relaxed) > 0
    }

    /// Park until woken (true) or the session ended (false).
    pub(super) fn park(&self) -> bool {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        self.parked.fetch_add(1, Ordering::Relaxed);
        while st.tokens == 0 && !st.ended {
            st = self.cv.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        self.parked.fetch_sub(1, Ordering::Relaxed);
        if st.ended {
            return false;
        }
        st.tokens -= 1;
        true
    }

    /// Wake one parked helper; false when none is parked or each parked one is already woken.
    pub(super) fn wake_one(&self) -> bool {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.tokens < self.parked.load(Ordering::Relaxed) && !st.ended {
            st.tokens += 1;
            self.cv.notify_one();
            true
        } else {
            false
        }
    }

    /// The session is over: every helper leaves.
    pub(super) fn end(&self) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.ended = true;
        self.cv.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Wait until `n` helpers are parked (they park on their own schedule).
    fn until_parked(g: &Gate, n: usize) {
        while g.parked.load(Ordering::Relaxed) != n {
            std::thread::yield_now();
        }
    }

    #[test]
    fn a_wake_goes_to_one_parked_helper_once() {
        let g = Gate::default();
        assert!(!g.wake_one(), "nobody parked");
        std::thread::scope(|s| {
            let h = s.spawn(|| g.park());
            until_parked(&g, 1);
            assert!(g.has_parked());
            assert!(g.wake_one());
            assert!(!g.wake_one(), "the one parked helper is already woken");
            assert!(h.join().unwrap(), "woken, not ended");
        });
        assert!(!g.has_parked());
        assert_eq!(g.state.lock().unwrap().tokens, 0, "the token was taken");
    }

    #[test]
    fn two_wakes_release_two_of_three_and_end_releases_the_rest() {
        let g = Gate::default();
        std::thread::scope(|s| {
            let hs: Vec<_> = (0..3).map(|_| s.spawn(|| g.park())).collect();
            until_parked(&g, 3);
            assert!(g.wake_one() && g.wake_one());
            until_parked(&g, 1);
            g.end();
            assert!(!g.wake_one(), "nothing is woken after the end");
            let woken = hs.into_iter().map(|h| h.join().unwrap());
            assert_eq!(woken.filter(|&w| w).count(), 2);
        });
        assert!(!g.park(), "a helper arriving after the end leaves at once");
    }
}
