//! The running service.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use paygress_cashu::CashuVerifier;
use paygress_core::{
    DynJournal, DynNotifier, DynPaymentVerifier, DynPodBackend, DynTransport, Paygress,
};
use paygress_http::wire::ComponentHealth;
use paygress_local::LocalBackend;
use paygress_nostr::NostrTransport;
use paygress_nostr::nostr_sdk::ToBech32;
use paygress_store::{FileJournal, private};
use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinSet};
use tracing::{info, warn};

use crate::{BackendConfig, NodeConfig, NodeError};

/// How often owed refunds are retried and expired leases reaped, by default.
pub const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(15);

/// How long [`Node::shutdown`] lets HTTP requests in flight finish.
/// Default grace period for requests in flight at shutdown: longer than a slow
/// Kubernetes pod start.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// A running service: its parts, and the tasks serving requests.
pub struct Node {
    /// The service.
    pub service: Arc<Paygress>,
    /// The service's wallet.
    pub wallet: Arc<CashuVerifier>,
    /// The pod backend.
    pub backend: DynPodBackend,
    /// The local backend, when leases run on this machine (to inspect leases' processes).
    pub local: Option<Arc<LocalBackend>>,
    /// The Nostr transport, when configured.
    pub nostr: Option<Arc<NostrTransport>>,
    /// Where the HTTP listener listens.
    pub http_addr: SocketAddr,
    /// The transports served, each shut down (through the port) at the end of
    /// [`Node::shutdown`].
    transports: Vec<DynTransport>,
    tasks: JoinSet<()>,
    stop: watch::Sender<bool>,
    maintenance: Option<AbortHandle>,
    grace: Duration,
}

impl Node {
    /// Builds every part from `config` and starts serving (see the crate's docs for the
    /// order).
    pub async fn start(config: NodeConfig) -> Result<Self, NodeError> {
        private::check_private(&config.private_paths(), config.allow_shared_data)?;
        private::create_private_dir(&config.data_dir).map_err(|source| NodeError::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;

        // Listen first: connections made while the rest starts wait in the accept queue.
        let listener = tokio::net::TcpListener::bind(config.http.addr)
            .await
            .map_err(|source| NodeError::Bind {
                addr: config.http.addr,
                source,
            })?;
        let wallet =
            CashuVerifier::open(&config.cashu)
                .await
                .map_err(|source| NodeError::Wallet {
                    path: config.cashu.db_path.clone(),
                    source,
                })?;
        // Settles wallet operations a crash interrupted and caches mint metadata, so the
        // first payment costs one mint request. A mint that is down is not fatal.
        for (mint, unit, e) in wallet.warm_up().await {
            warn!(%mint, %unit, error = %e, "mint not reachable at start");
        }
        // Payments may be locked to the service's Nostr key (NUT-11): the wallet signs them.
        if let Some(n) = &config.nostr {
            let key = wallet
                .accept_locked_to(&n.keys.secret_key().secret_bytes())
                .map_err(|source| NodeError::Wallet {
                    path: config.cashu.db_path.clone(),
                    source,
                })?;
            info!(locking_key = %key, "locked payments accepted");
        }
        let wallet = Arc::new(wallet);

        // Inside a lease, the top-up command names this service.
        let service_npub = config.nostr.as_ref().map(|n| {
            let key = n.keys.public_key();
            key.to_bech32().unwrap_or_else(|_| key.to_hex())
        });
        let name_service = |mut c: paygress_local::LocalConfig| {
            if let Some(npub) = &service_npub
                && c.top_up_command == paygress_local::DEFAULT_TOP_UP_COMMAND
            {
                c.top_up_command =
                    format!("paygress topup --service {npub} --pod {{pod}} --token <cashu token>");
            }
            c
        };
        let (backend, local): (DynPodBackend, _) = match config.backend {
            BackendConfig::Local(c) => {
                let c = name_service(c);
                let local = Arc::new(LocalBackend::start(c).await?);
                (local.clone(), Some(local))
            }
            BackendConfig::LocalWithFallback(c) => {
                let c = name_service(c);
                let local = Arc::new(LocalBackend::start_with_fallback(c).await?);
                (local.clone(), Some(local))
            }
            BackendConfig::Kubernetes(c) => {
                let backend = paygress_k8s::K8sBackend::try_default(c).await?;
                // Refuse to start when no buyer could reach a lease.
                backend.check_reachability().await?;
                (Arc::new(backend) as DynPodBackend, None)
            }
            BackendConfig::Custom(b) => (b, None),
        };
        info!(backend = backend.name(), "pod backend ready");

        // Nostr first: settlement at start delivers what it issues through its notifier.
        let nostr = match config.nostr {
            Some(mut c) => {
                // The offer names the host key every local lease presents.
                if c.host_key_fingerprint.is_none() {
                    c.host_key_fingerprint = local
                        .as_ref()
                        .and_then(|l| l.host_keys().into_iter().next())
                        .map(|k| k.fingerprint);
                }
                Some(Arc::new(NostrTransport::start(c).await?))
            }
            None => None,
        };
        let journal: DynJournal = Arc::new(FileJournal::open(&config.journal_path)?);
        let mut builder =
            Paygress::builder(config.service, wallet.clone(), backend.clone()).journal(journal);
        if let Some(n) = &nostr {
            builder = builder.notifier(Arc::new(n.notifier()) as DynNotifier);
        }
        let service = Arc::new(builder.build());
        let settled = service.settle().await;
        if settled > 0 {
            info!(settled, "settled requests left open by the previous run");
        }

        let mut tasks = JoinSet::new();
        let maintenance = config
            .maintenance
            .map(|every| tasks.spawn(service.clone().run_maintenance(every)));
        // Set while the Nostr serve loop runs; reported by `/healthz`.
        let nostr_up = Arc::new(AtomicBool::new(false));
        let mut transports: Vec<DynTransport> = Vec::new();
        if let Some(transport) = &nostr {
            transports.push(transport.clone());
            nostr_up.store(true, Ordering::SeqCst);
            let (svc, t, up) = (service.clone(), transport.clone(), nostr_up.clone());
            tasks.spawn(async move {
                svc.serve(t).await;
                up.store(false, Ordering::SeqCst);
            });
        }

        let http_addr = listener.local_addr().map_err(|source| NodeError::Bind {
            addr: config.http.addr,
            source,
        })?;
        let http_api = config.http.api;
        let with_nostr = nostr.is_some();
        let probe: paygress_http::TransportProbe = Arc::new(move || {
            let mut list = Vec::new();
            if http_api {
                list.push(ComponentHealth {
                    name: "http".to_owned(),
                    up: true,
                });
            }
            if with_nostr {
                list.push(ComponentHealth {
                    name: "nostr".to_owned(),
                    up: nostr_up.load(Ordering::SeqCst),
                });
            }
            list
        });
        let mut api =
            paygress_http::HttpApi::new(service.clone(), wallet.clone(), config.http.config)
                .with_transport_probe(probe);
        if let Some(render) = config.http.metrics {
            api = api.with_metrics(render);
        }
        // One shutdown signal, fanned out to the HTTP servers for a graceful stop.
        let (stop, stop_rx) = watch::channel(false);
        let stopped_on = |rx: watch::Receiver<bool>| async move {
            let mut rx = rx;
            let _ = rx.wait_for(|stop| *stop).await;
        };
        if let Some(mut web) = config.http.web {
            if web.npub.is_none() {
                web.npub = nostr.as_ref().map(|n| {
                    let key = n.public_key();
                    key.to_bech32().unwrap_or_else(|_| key.to_hex())
                });
            }
            if web.host_key_fingerprint.is_none() {
                web.host_key_fingerprint = local
                    .as_ref()
                    .and_then(|l| l.host_public_key())
                    .map(|k| paygress_http::web::host_key_fingerprint(&k));
            }
            api = api.with_web(paygress_http::WebUi::new(
                service.clone(),
                wallet.clone() as DynPaymentVerifier,
                web,
            ));
            // Without the API on the main listener, the page has its own (`WEB_ADDR`).
            if !http_api && let Some(addr) = config.http.web_addr {
                let web_listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|source| NodeError::Bind { addr, source })?;
                info!(%addr, "buyer web page listening");
                let (api, stop) = (api.clone(), stopped_on(stop_rx.clone()));
                tasks.spawn(async move {
                    if let Err(e) = api.serve_web(web_listener, stop).await {
                        warn!(error = %e, "web page server stopped");
                    }
                });
            }
        }
        let stopped = stopped_on(stop_rx);
        if http_api {
            info!(addr = %http_addr, "HTTP API listening");
            tasks.spawn(async move {
                if let Err(e) = api.serve(listener, stopped).await {
                    warn!(error = %e, "HTTP server stopped");
                }
            });
        } else {
            info!(addr = %http_addr, "health endpoint listening (GET /healthz)");
            tasks.spawn(async move {
                if let Err(e) = api.serve_health_only(listener, stopped).await {
                    warn!(error = %e, "health endpoint stopped");
                }
            });
        }
        Ok(Self {
            service,
            wallet,
            backend,
            local,
            nostr,
            http_addr,
            transports,
            tasks,
            stop,
            maintenance,
            grace: config.shutdown_grace,
        })
    }

    /// Resolves when a part stopped on its own (the HTTP server failed, the Nostr serve
    /// loop ended): the node should then be shut down.
    pub async fn stopped(&mut self) {
        if self.tasks.join_next().await.is_none() {
            std::future::pending::<()>().await;
        }
    }

    /// Stops serving gracefully: no new request is taken (HTTP stops accepting, Nostr
    /// stops reading), the ones in flight finish within the grace period (Nostr stays
    /// connected to answer them), then every transport is shut down
    /// ([`paygress_core::Transport::shutdown`]: Nostr disconnects from its relays) and
    /// the rest is stopped. Leases live in the backend and are picked up at the next start.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(m) = self.maintenance.take() {
            m.abort();
        }
        if let Some(n) = &self.nostr {
            n.stop_reading();
        }
        let backend = self.backend.clone();
        let waited = tokio::time::timeout(self.grace, async {
            while let Some(done) = self.tasks.join_next().await {
                if let Err(e) = done
                    && e.is_panic()
                {
                    warn!(error = %e, "a component panicked while stopping");
                }
            }
            // Requests have ended: what the backend owes their leases lands now.
            backend.shutdown().await;
        })
        .await;
        if waited.is_err() {
            warn!(
                grace_secs = self.grace.as_secs(),
                "requests still running after the grace period; stopping them (the journal \
                 settles them at the next start)"
            );
        }
        for t in &self.transports {
            t.shutdown().await;
        }
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
    }
}
