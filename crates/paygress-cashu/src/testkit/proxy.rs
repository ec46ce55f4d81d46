//! A fault-injecting proxy in front of a [`TestMint`]: the mint applies a swap, then the
//! proxy loses the answer, drops the connection, or delays it; or the proxy is down.
//!
//! The proxy listens on its own `127.0.0.1` port and forwards every request to the
//! mint's router in-process (the mint's request log still records it). Wallets use the
//! proxy's URL as the mint URL, so tokens minted through it name the proxy.
//!
//! ```no_run
//! # async fn demo() -> Result<(), paygress_cashu::CashuError> {
//! use paygress_cashu::testkit::{MintProxy, SwapFault, TestMint};
//! let mint = TestMint::start().await?;
//! let proxy = MintProxy::start(&mint).await?;
//! proxy.fail_next_swap(SwapFault::LoseAnswer); // the next swap is applied, its answer lost
//! # Ok(()) }
//! ```

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use paygress_core::money::MintUrl;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tower::ServiceExt;

use super::{TestMint, bind};
use crate::error::CashuError;

/// What happens to one `POST /v1/swap` after the mint applied it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwapFault {
    /// The answer is replaced by `502 Bad Gateway`.
    LoseAnswer,
    /// The answer's headers are sent, then the connection is cut before the body.
    DropConnection,
    /// The answer is held back this long, then delivered.
    Delay(Duration),
}

/// Faults drawn at random for every swap (probabilities in `0.0..=1.0`, checked in
/// order lose, drop, delay), reproducible from `seed`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RandomFaults {
    /// Probability of [`SwapFault::LoseAnswer`].
    pub lose: f64,
    /// Probability of [`SwapFault::DropConnection`].
    pub drop: f64,
    /// Probability of [`SwapFault::Delay`].
    pub delay: f64,
    /// How long a delayed answer is held.
    pub delay_for: Duration,
    /// Seed of the draws.
    pub seed: u64,
}

/// What the proxy did so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Swaps forwarded to the mint.
    pub swaps: u64,
    /// Swap answers replaced by 502.
    pub lost: u64,
    /// Swap answers cut off.
    pub dropped: u64,
    /// Swap answers delayed.
    pub delayed: u64,
}

#[derive(Default)]
struct Counters {
    swaps: AtomicU64,
    lost: AtomicU64,
    dropped: AtomicU64,
    delayed: AtomicU64,
}

struct Shared {
    mint: Router,
    queue: Mutex<VecDeque<SwapFault>>,
    random: Mutex<Option<(RandomFaults, StdRng)>>,
    counters: Counters,
}

impl Shared {
    fn next_fault(&self) -> Option<SwapFault> {
        if let Some(f) = lock(&self.queue).pop_front() {
            return Some(f);
        }
        let mut random = lock(&self.random);
        let (plan, rng) = random.as_mut()?;
        let x: f64 = rng.random();
        if x < plan.lose {
            Some(SwapFault::LoseAnswer)
        } else if x < plan.lose + plan.drop {
            Some(SwapFault::DropConnection)
        } else if x < plan.lose + plan.drop + plan.delay {
            Some(SwapFault::Delay(plan.delay_for))
        } else {
            None
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A proxy in front of one [`TestMint`] that can lose, cut or delay swap answers after
/// the mint applied the swap, and can be taken down (connections refused).
pub struct MintProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
}

impl std::fmt::Debug for MintProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MintProxy")
            .field("addr", &self.addr)
            .field("up", &self.server.is_some())
            .finish_non_exhaustive()
    }
}

async fn forward(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let is_swap = req.method() == Method::POST && req.uri().path() == "/v1/swap";
    let fault = if is_swap {
        shared.counters.swaps.fetch_add(1, Ordering::Relaxed);
        shared.next_fault()
    } else {
        None
    };
    // The mint handles the request to the end even if the client goes away (a killed
    // service): like a mint behind a reverse proxy, not a handler cancelled midway.
    let mint = shared.mint.clone();
    let handled = tokio::spawn(async move {
        match mint.oneshot(req).await {
            Ok(r) => r,
            Err(never) => match never {},
        }
    });
    let response = match handled.await {
        Ok(r) => r,
        Err(e) => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("mint task failed: {e}"),
            )
                .into_response();
        }
    };
    match fault {
        None => response,
        Some(SwapFault::LoseAnswer) => {
            shared.counters.lost.fetch_add(1, Ordering::Relaxed);
            // Read the mint's answer to the end (it has applied the swap), then lose it.
            let _ = axum::body::to_bytes(response.into_body(), usize::MAX).await;
            (
                StatusCode::BAD_GATEWAY,
                "upstream answer lost (fault proxy)",
            )
                .into_response()
        }
        Some(SwapFault::DropConnection) => {
            shared.counters.dropped.fetch_add(1, Ordering::Relaxed);
            let (parts, body) = response.into_parts();
            let _ = axum::body::to_bytes(body, usize::MAX).await;
            let cut = futures::stream::once(async {
                Err::<Bytes, _>(std::io::Error::other("connection cut (fault proxy)"))
            });
            Response::from_parts(parts, Body::from_stream(cut))
        }
        Some(SwapFault::Delay(d)) => {
            shared.counters.delayed.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(d).await;
            response
        }
    }
}

impl MintProxy {
    /// Starts a proxy for `mint` on `127.0.0.1` and a free port.
    pub async fn start(mint: &TestMint) -> Result<Self, CashuError> {
        let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
        let addr = listener.local_addr().map_err(|source| CashuError::Io {
            action: "read address of",
            path: "mint proxy listener".into(),
            source,
        })?;
        let shared = Arc::new(Shared {
            mint: mint.router.clone(),
            queue: Mutex::default(),
            random: Mutex::default(),
            counters: Counters::default(),
        });
        let mut this = Self {
            addr,
            shared,
            server: None,
        };
        this.serve(listener);
        Ok(this)
    }

    fn serve(&mut self, listener: TcpListener) {
        let (tx, rx) = oneshot::channel::<()>();
        let router = Router::new()
            .fallback(forward)
            .with_state(self.shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        self.server = Some((tx, task));
    }

    /// The proxy's URL (`http://127.0.0.1:PORT`): use it as the mint's URL.
    pub fn url(&self) -> MintUrl {
        MintUrl::new(format!("http://{}", self.addr))
    }

    /// The socket the proxy listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Applies `fault` to the next swap (queued after earlier calls).
    pub fn fail_next_swap(&self, fault: SwapFault) {
        lock(&self.shared.queue).push_back(fault);
    }

    /// Draws a fault for every swap not covered by [`MintProxy::fail_next_swap`]
    /// (`None`: no random faults).
    pub fn set_random(&self, faults: Option<RandomFaults>) {
        *lock(&self.shared.random) = faults.map(|f| (f, StdRng::seed_from_u64(f.seed)));
    }

    /// What the proxy did so far.
    pub fn stats(&self) -> ProxyStats {
        let c = &self.shared.counters;
        ProxyStats {
            swaps: c.swaps.load(Ordering::Relaxed),
            lost: c.lost.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            delayed: c.delayed.load(Ordering::Relaxed),
        }
    }

    /// Whether the proxy accepts connections.
    pub fn is_up(&self) -> bool {
        self.server.is_some()
    }

    /// Stops listening: connections are refused until [`MintProxy::up`].
    pub async fn down(&mut self) {
        if let Some((tx, mut task)) = self.server.take() {
            let _ = tx.send(());
            // Open connections finish their request and close; then stop for good.
            if tokio::time::timeout(Duration::from_secs(2), &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
    }

    /// Listens again on the same port after [`MintProxy::down`].
    pub async fn up(&mut self) -> Result<(), CashuError> {
        if self.server.is_some() {
            return Ok(());
        }
        let listener = bind(self.addr)?;
        self.serve(listener);
        Ok(())
    }
}

impl Drop for MintProxy {
    fn drop(&mut self) {
        if let Some((tx, task)) = self.server.take() {
            let _ = tx.send(());
            task.abort();
        }
    }
}
