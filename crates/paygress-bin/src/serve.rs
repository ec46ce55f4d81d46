//! `paygress serve`: build every component from the configuration and run.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use paygress_cashu::{CashuConfig, CashuVerifier};
use paygress_core::{DynJournal, DynNotifier, DynPodBackend, Paygress};
use paygress_http::wire::ComponentHealth;
use paygress_local::{LocalBackend, LocalConfig};
use paygress_nostr::{NostrConfig, NostrTransport};
use paygress_store::{FileJournal, private};
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::config::{BackendKind, ServeArgs};

/// How often owed refunds are retried and expired leases reaped.
pub const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(15);

/// Refuses to start (naming the `chmod` that fixes it) when the existing data directory,
/// journal or wallet files are open to group or others, unless
/// `PAYGRESS_ALLOW_SHARED_DATA` is set (then it warns); then creates the data directory
/// 0700 if it is missing.
pub fn ensure_private_data(args: &ServeArgs) -> Result<()> {
    private::check_private(&args.private_paths(), args.allow_shared_data)?;
    private::create_private_dir(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))
}

/// Opens the service wallet.
pub async fn open_wallet(args: &ServeArgs) -> Result<Arc<CashuVerifier>> {
    let config = CashuConfig::new(args.cashu_db(), &args.whitelisted_mints)
        .context("WHITELISTED_MINTS / CASHU_DB_PATH")?;
    let verifier = CashuVerifier::open(&config)
        .await
        .with_context(|| format!("opening the wallet at {}", config.db_path.display()))?;
    // Settles wallet operations a crash interrupted and caches mint metadata, so the
    // first payment costs one mint request. A mint that is down is not fatal.
    for (mint, unit, e) in verifier.warm_up().await {
        warn!(%mint, %unit, error = %e, "mint not reachable at start");
    }
    Ok(Arc::new(verifier))
}

/// Builds the pod backend `POD_BACKEND` names.
pub async fn backend(args: &ServeArgs) -> Result<DynPodBackend> {
    Ok(match args.pod_backend {
        BackendKind::Local => {
            // LOCAL_UID_RANGE, LOCAL_*_MIB and the rest come from the environment;
            // the flags below override what they name.
            let mut config = LocalConfig::from_env().context("local backend settings")?;
            config.data_dir = args.data_dir.clone();
            config.port_range = args.local_port_range.parse().context("LOCAL_PORT_RANGE")?;
            config.bind_host = args.bind_host.clone();
            config.sandbox = args.local_sandbox.parse().context("LOCAL_SANDBOX")?;
            config.network = args.local_network.parse().context("LOCAL_NETWORK")?;
            Arc::new(LocalBackend::start(config).await.context("local backend")?)
        }
        BackendKind::Kubernetes => crate::serve::kubernetes(args).await?,
    })
}

/// Builds the Kubernetes backend from the in-cluster or kubeconfig credentials.
pub async fn kubernetes(args: &ServeArgs) -> Result<DynPodBackend> {
    let mut config = paygress_k8s::K8sConfig::from_env().context("Kubernetes settings")?;
    config.namespace = args.pod_namespace.clone();
    config.ssh_port = args.ssh_port;
    config.default_image = args.ssh_base_image.clone();
    let backend = paygress_k8s::K8sBackend::try_default(config)
        .await
        .context(
            "no Kubernetes credentials (in-cluster service account or ~/.kube/config); \
         on one machine without a cluster set POD_BACKEND=local",
        )?;
    Ok(Arc::new(backend))
}

/// Builds the service with a durable journal and settles what a previous run left open;
/// replies settled later (owed refunds and change) go to their buyers through
/// `notifier`.
pub async fn service(
    args: &ServeArgs,
    payments: Arc<CashuVerifier>,
    backend: DynPodBackend,
    notifier: Option<DynNotifier>,
) -> Result<Arc<Paygress>> {
    private::create_private_dir(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let journal: DynJournal =
        Arc::new(FileJournal::open(args.journal_path()).context("opening the request journal")?);
    let mut builder = Paygress::builder(args.service_config()?, payments, backend).journal(journal);
    if let Some(notifier) = notifier {
        builder = builder.notifier(notifier);
    }
    let service = Arc::new(builder.build());
    let settled = service.settle().await;
    if settled > 0 {
        info!(settled, "settled requests left open by the previous run");
    }
    Ok(service)
}

/// Runs `paygress serve` until Ctrl-C / SIGTERM.
pub async fn run(args: ServeArgs) -> Result<()> {
    ensure_private_data(&args)?;
    let metrics = crate::observe::install()?;
    let metrics_addr = crate::observe::metrics_addr()?;
    let sweep = crate::withdraw::SweepConfig::from_env()?;
    let grace = crate::shutdown::grace_from_env()?;
    let payments = open_wallet(&args).await?;
    let backend = backend(&args).await?;
    info!(backend = backend.name(), "pod backend ready");
    // Nostr first: settlement at start delivers what it issues through its notifier.
    let transport = if args.run_mode.nostr() {
        Some(start_nostr(&args).await?)
    } else {
        None
    };
    let notifier = transport
        .as_ref()
        .map(|t| Arc::new(t.notifier()) as DynNotifier);
    let service = service(&args, payments.clone(), backend, notifier).await?;

    let mut tasks = JoinSet::new();
    // One shutdown signal, fanned out to the HTTP servers for a graceful stop.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };
    let maintenance = args
        .enable_cleanup_task
        .then(|| tasks.spawn(service.clone().run_maintenance(MAINTENANCE_INTERVAL)));
    let mut nostr = None;
    // Gauge samplers: never finish on their own; aborted at shutdown.
    let mut samplers = Vec::new();
    if let Some(sweep) = sweep {
        info!(to = %sweep.to, above_sats = sweep.above_sats, "sweeping income to Lightning");
        samplers.push(tokio::spawn(crate::withdraw::run_sweeper(
            payments.clone(),
            sweep,
        )));
    }
    // Set while the Nostr serve loop runs; reported by `/healthz`.
    let nostr_up = Arc::new(AtomicBool::new(false));
    if let Some(transport) = transport {
        samplers.push(tokio::spawn(crate::observe::sample_relays(
            transport.clone(),
        )));
        nostr_up.store(true, Ordering::SeqCst);
        let (svc, t, up) = (service.clone(), transport.clone(), nostr_up.clone());
        tasks.spawn(async move {
            svc.serve(t).await;
            up.store(false, Ordering::SeqCst);
        });
        nostr = Some(transport);
    }

    // HTTP: the whole API in http/both mode; in nostr mode only `/healthz`, so that
    // orchestrator probes have an endpoint.
    let listener = tokio::net::TcpListener::bind(args.bind_addr)
        .await
        .with_context(|| format!("binding BIND_ADDR {}", args.bind_addr))?;
    let run_mode = args.run_mode;
    let probe_up = nostr_up.clone();
    let probe: paygress_http::TransportProbe = Arc::new(move || {
        let mut list = Vec::new();
        if run_mode.http() {
            list.push(ComponentHealth {
                name: "http".to_owned(),
                up: true,
            });
        }
        if run_mode.nostr() {
            list.push(ComponentHealth {
                name: "nostr".to_owned(),
                up: probe_up.load(Ordering::SeqCst),
            });
        }
        list
    });
    let mut api =
        paygress_http::HttpApi::new(service.clone(), payments.clone(), http_config(&args)?)
            .with_transport_probe(probe);
    let render = crate::observe::render(metrics, args.journal_path());
    match metrics_addr {
        Some(addr) => {
            let listener = crate::observe::bind(addr).await?;
            tasks.spawn(crate::observe::serve(
                listener,
                service.clone(),
                render,
                stopped(),
            ));
        }
        None => api = api.with_metrics(render),
    }
    if args.run_mode.http() {
        info!(addr = %args.bind_addr, "HTTP API listening");
        tasks.spawn(async move {
            if let Err(e) = api.serve(listener, stopped()).await {
                warn!(error = %e, "HTTP server stopped");
            }
        });
    } else {
        info!(addr = %args.bind_addr, "health endpoint listening (GET /healthz)");
        tasks.spawn(async move {
            if let Err(e) = api.serve_health_only(listener, stopped()).await {
                warn!(error = %e, "health endpoint stopped");
            }
        });
    }

    tokio::select! {
        _ = shutdown_signal() => info!("shutting down"),
        _ = tasks.join_next() => warn!("a component stopped; shutting down"),
    }
    // Stop taking requests: HTTP stops accepting, Nostr stops reading; both finish
    // what they took (Nostr stays connected to answer), then Nostr disconnects.
    let _ = stop_tx.send(true);
    samplers.iter().for_each(|s| s.abort());
    if let Some(m) = maintenance {
        m.abort();
    }
    if let Some(n) = &nostr {
        n.stop_reading();
    }
    crate::shutdown::drain(&mut tasks, grace).await;
    if let Some(n) = nostr {
        n.shutdown().await;
    }
    Ok(())
}

/// Starts the Nostr transport from `NOSTR_PRIVATE_KEY` / `NOSTR_RELAYS`.
async fn start_nostr(args: &ServeArgs) -> Result<Arc<NostrTransport>> {
    let config = NostrConfig::from_values(
        args.nostr_private_key.as_deref(),
        &args.nostr_relays.join(","),
        &args.data_dir,
    )
    .context("NOSTR_PRIVATE_KEY / NOSTR_RELAYS")?;
    Ok(Arc::new(
        NostrTransport::start(config).await.context("nostr")?,
    ))
}

/// The HTTP transport's settings: `HTTP_BODY_LIMIT_BYTES`, `HTTP_REQUEST_TIMEOUT_SECS`,
/// `HTTP_RATE_LIMIT_PER_MINUTE` from the environment, the quoted default duration from
/// the serve arguments.
pub fn http_config(args: &ServeArgs) -> Result<paygress_http::HttpConfig> {
    let mut config = paygress_http::HttpConfig::from_env().context("HTTP_* settings")?;
    config.default_duration_minutes = args.default_pod_duration_minutes;
    Ok(config)
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
