//! Limits on what strangers can hold of a node: connections that have not
//! yet shown who they are (HTTP clients before their headers, peers before
//! their handshake and Hello) are capped below the process's file-handle
//! limit, and at the cap the oldest makes room for the newest; repeated
//! failures are logged a line a second at most (metrics count them all).

use tokio_util::sync::CancellationToken;

/// `configured`, and at most a quarter of the process's file-handle limit,
/// so the rest keeps room for peers, storage and the HTTP API.
pub(crate) fn file_handle_share(configured: usize) -> usize {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit only writes the struct it is given.
    let soft = match unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } {
        0 => usize::try_from(lim.rlim_cur).unwrap_or(usize::MAX),
        _ => usize::MAX,
    };
    configured.min(soft / 4).max(1)
}

/// Open connections, oldest first, each with the token that evicts it.
pub(crate) struct Oldest {
    cap: usize,
    next: u64,
    open: std::collections::VecDeque<(u64, CancellationToken)>,
}

impl Oldest {
    /// At most `cap` connections.
    pub(crate) fn new(cap: usize) -> Self {
        Oldest { cap, next: 0, open: Default::default() }
    }
    /// Takes a new connection, evicting the oldest first if `cap` are open:
    /// its id, the token that evicts it, and whether one was evicted.
    pub(crate) fn admit(&mut self) -> (u64, CancellationToken, bool) {
        let full = self.open.len() >= self.cap;
        if full {
            if let Some((_, evict)) = self.open.pop_front() {
                evict.cancel();
            }
        }
        self.next += 1;
        let evict = CancellationToken::new();
        self.open.push_back((self.next, evict.clone()));
        (self.next, evict, full)
    }
    /// The connection ended.
    pub(crate) fn remove(&mut self, id: u64) {
        self.open.retain(|(i, _)| *i != id);
    }
}

/// Lets one line of a burst of repeated log lines through per second (a
/// flood of failures would otherwise fill the log); the metric counts them all.
#[derive(Debug, Default)]
pub(crate) struct Throttled {
    last: Option<std::time::Instant>,
    held: u64,
}

impl Throttled {
    /// Some(lines this one stands for, itself included) if it may be logged now.
    pub(crate) fn tick(&mut self) -> Option<u64> {
        let now = std::time::Instant::now();
        if self.last.is_some_and(|t| now - t < std::time::Duration::from_secs(1)) {
            self.held += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.held) + 1)
    }
}

/// A failed accept on `listener` (`peer` or `http`): out of file handles,
/// mostly. Counts it, logs it a line a second at most, and waits for some
/// handles to close instead of spinning.
pub(crate) async fn accept_failed(
    shared: &crate::shared::Shared,
    listener: &'static str,
    log: &mut Throttled,
    e: std::io::Error,
) {
    shared.metrics.accept_failed(listener);
    if let Some(n) = log.tick() {
        tracing::warn!(node = %shared.cfg.name, listener, repeated = n, "accept failed: {e}");
    }
    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
}
