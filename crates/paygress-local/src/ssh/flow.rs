//! Input flow control of one connection.

use super::*;

pub(super) enum Input {
    /// Client bytes, holding their share of the connection's input allowance until
    /// written to the command.
    Data(Vec<u8>, Credit),
    Eof,
    Resize(pty_process::Size, Credit),
}

/// Every queued input message is charged at least this many bytes, so tiny packets
/// cannot queue millions of messages.
pub(super) const MIN_CHARGE: usize = 256;

/// How often a blocked `data` call checks whether the connection's output is stuck.
pub(super) const STALL_CHECK: Duration = Duration::from_millis(20);

/// Input accepted beyond the budget per connection (see [`Flow`]) before the
/// connection is closed.
pub(super) const OVERFLOW_CAP: usize = 16 * 1024 * 1024;

/// Concurrent password hashes (PBKDF2) across all leases, on blocking threads.
pub(super) static HASHING: Semaphore = Semaphore::const_new(2);

pub(super) type Output = Arc<ChannelWriteHalf<Msg>>;

/// Input flow control of one connection.
///
/// russh replenishes the client's window as soon as it reads a data packet, so the
/// only brake on a client is to stop reading its connection: `data` waits until the
/// commands have taken earlier input (the budget). But window adjustments for the
/// commands' output arrive on that same connection: when output is waiting to be
/// sent while `data` waits, not reading would deadlock (`cat` with a big input). Then
/// input is still taken beyond the budget, one packet per [`STALL_CHECK`], up to
/// [`OVERFLOW_CAP`]; a client that gets there (floods input while not accepting
/// output) is disconnected.
pub(super) struct Flow {
    pub(super) budget: Arc<Semaphore>,
    pub(super) budget_size: usize,
    pub(super) overflow: AtomicUsize,
    /// Output sends in progress on this connection.
    pub(super) sending: AtomicUsize,
}

/// What a queued input message holds of its connection's allowance; released when
/// the message is dropped (written to the command or discarded).
pub(super) enum Credit {
    Budget(#[allow(dead_code)] OwnedSemaphorePermit),
    Overflow(Arc<Flow>, usize),
}

impl Drop for Credit {
    fn drop(&mut self) {
        if let Self::Overflow(flow, n) = self {
            flow.overflow.fetch_sub(*n, Ordering::SeqCst);
        }
    }
}

impl Flow {
    pub(super) fn new(budget: usize) -> Arc<Self> {
        let budget = budget.clamp(64 * 1024, Semaphore::MAX_PERMITS);
        Arc::new(Self {
            budget: Arc::new(Semaphore::new(budget)),
            budget_size: budget,
            overflow: AtomicUsize::new(0),
            sending: AtomicUsize::new(0),
        })
    }

    pub(super) fn charge(&self, len: usize) -> (usize, u32) {
        let n = len.clamp(MIN_CHARGE, self.budget_size);
        (n, u32::try_from(n).unwrap_or(u32::MAX))
    }

    /// Credit for `len` bytes without waiting, if the budget has room.
    pub(super) fn try_credit(&self, len: usize) -> Option<Credit> {
        let (_, permits) = self.charge(len);
        self.budget
            .clone()
            .try_acquire_many_owned(permits)
            .ok()
            .map(Credit::Budget)
    }

    /// Credit for `len` bytes: waits for the budget, or takes overflow while output
    /// is stuck; `None` when the overflow cap is reached.
    pub(super) async fn credit(self: &Arc<Self>, len: usize) -> Option<Credit> {
        let (n, permits) = self.charge(len);
        loop {
            tokio::select! {
                p = self.budget.clone().acquire_many_owned(permits) => {
                    return p.ok().map(Credit::Budget);
                }
                () = tokio::time::sleep(STALL_CHECK) => {
                    if self.sending.load(Ordering::SeqCst) > 0 {
                        let before = self.overflow.fetch_add(n, Ordering::SeqCst);
                        if before + n > OVERFLOW_CAP {
                            self.overflow.fetch_sub(n, Ordering::SeqCst);
                            return None;
                        }
                        return Some(Credit::Overflow(self.clone(), n));
                    }
                }
            }
        }
    }
}

/// Counts an output send in progress (see [`Flow`]).
pub(super) struct Sending<'a>(&'a Flow);

impl<'a> Sending<'a> {
    pub(super) fn start(flow: &'a Flow) -> Self {
        flow.sending.fetch_add(1, Ordering::SeqCst);
        Self(flow)
    }
}

impl Drop for Sending<'_> {
    fn drop(&mut self) {
        self.0.sending.fetch_sub(1, Ordering::SeqCst);
    }
}
