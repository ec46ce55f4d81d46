//! `paygress serve`: the configuration, validated into a [`NodeConfig`], run until
//! Ctrl-C / SIGTERM.

use anyhow::{Context, Result};
use paygress_cashu::CashuConfig;
use paygress_local::LocalConfig;
use paygress_node::{BackendConfig, HttpListen, MAINTENANCE_INTERVAL, Node, NodeConfig};
use paygress_nostr::NostrConfig;
use tracing::{info, warn};

use crate::config::{BackendKind, ServeArgs};

/// The node's configuration from the serve arguments: the only place settings become
/// the components' typed configuration.
pub fn node_config(args: &ServeArgs) -> Result<NodeConfig> {
    let cashu = CashuConfig::new(args.cashu_db(), &args.whitelisted_mints)
        .context("WHITELISTED_MINTS / CASHU_DB_PATH")?;
    let mut http = http_config(args)?;
    let backend = match args.pod_backend {
        BackendKind::Local => BackendConfig::Local(
            LocalConfig::from_lookup(|k| args.lookup(k)).context("local backend settings")?,
        ),
        BackendKind::Kubernetes => {
            let k8s = paygress_k8s::K8sConfig::from_lookup(|k| args.lookup(k))
                .context("Kubernetes settings")?;
            // `/spawn-pod` answers once the pod is ready: the HTTP timeout must allow it.
            if args.http_request_timeout_secs.is_none() {
                http.request_timeout = http
                    .request_timeout
                    .max(k8s.ready_timeout + std::time::Duration::from_secs(30));
            }
            BackendConfig::Kubernetes(k8s)
        }
    };
    let nostr = if args.run_mode.nostr() {
        let mut config = NostrConfig::from_values(
            args.nostr_private_key.as_deref(),
            &args.nostr_relays.join(","),
            &args.data_dir,
        )
        .context("NOSTR_PRIVATE_KEY / NOSTR_RELAYS")?;
        config
            .apply_discovery(|k| args.lookup(k))
            .context("NOSTR_INDEX_RELAYS / NOSTR_INBOX_RELAYS / PAYGRESS_OFFER_*")?;
        Some(config)
    } else {
        None
    };
    Ok(NodeConfig {
        service: args.service_config()?,
        data_dir: args.data_dir.clone(),
        journal_path: args.journal_path(),
        cashu,
        allow_shared_data: args.allow_shared_data,
        backend,
        nostr,
        http: HttpListen {
            addr: args.bind_addr,
            api: args.run_mode.http(),
            config: http,
            web: web_config(args)?,
            web_addr: args.web_addr,
            metrics: None,
        },
        maintenance: args.enable_cleanup_task.then_some(MAINTENANCE_INTERVAL),
        shutdown_grace: std::time::Duration::from_secs(args.shutdown_grace_secs),
    })
}

/// Runs `paygress serve` until Ctrl-C / SIGTERM.
pub async fn run(args: ServeArgs) -> Result<()> {
    if args.check_config {
        args.service_config()?;
        http_config(&args)?;
        crate::withdraw::SweepConfig::from_args(&args)?;
        args.metrics_addr()?;
        println!("{args:#?}");
        println!("configuration OK");
        return Ok(());
    }
    let sweep = crate::withdraw::SweepConfig::from_args(&args)?;
    let metrics = crate::observe::install()?;
    let metrics_addr = args.metrics_addr()?;
    let render = crate::observe::render(metrics, args.journal_path());
    let mut config = node_config(&args)?;
    // `/metrics` on the HTTP port, or only on METRICS_ADDR when set.
    if metrics_addr.is_none() {
        config.http.metrics = Some(render.clone());
    }
    let mut node = Node::start(config).await?;
    // Helpers that never finish on their own; aborted at shutdown.
    let mut helpers = Vec::new();
    let (stop_metrics, stopped_metrics) = tokio::sync::oneshot::channel::<()>();
    if let Some(addr) = metrics_addr {
        let listener = crate::observe::bind(addr).await?;
        helpers.push(tokio::spawn(crate::observe::serve(
            listener,
            node.service.clone(),
            render,
            async move {
                let _ = stopped_metrics.await;
            },
        )));
    }
    if let Some(sweep) = sweep {
        info!(to = %sweep.to, above_sats = sweep.above_sats, "sweeping income to Lightning");
        helpers.push(tokio::spawn(crate::withdraw::run_sweeper(
            node.wallet.clone(),
            sweep,
        )));
    }
    if let Some(transport) = &node.nostr {
        helpers.push(tokio::spawn(crate::observe::sample_relays(
            transport.clone(),
        )));
    }
    tokio::select! {
        _ = shutdown_signal() => info!("shutting down"),
        _ = node.stopped() => warn!("a component stopped; shutting down"),
    }
    // Stop taking requests, finish those in flight, then stop.
    node.shutdown().await;
    let _ = stop_metrics.send(());
    helpers.iter().for_each(|h| h.abort());
    Ok(())
}

/// The HTTP transport's settings (`HTTP_*`, `DEFAULT_POD_DURATION_MINUTES`).
pub fn http_config(args: &ServeArgs) -> Result<paygress_http::HttpConfig> {
    paygress_http::HttpConfig::from_lookup(|k| args.lookup(k)).context("HTTP_* settings")
}

/// The buyer's web page (`GET /`), unless `WEB_UI=off`; `WEB_PUBLIC_URL` sets the
/// address its payment requests name.
pub fn web_config(args: &ServeArgs) -> Result<Option<paygress_http::WebConfig>> {
    let lookup = |n: &str| args.lookup(n);
    if !paygress_http::web::web_ui_enabled(lookup).context("WEB_UI")? {
        return Ok(None);
    }
    Ok(Some(
        paygress_http::WebConfig::from_lookup(lookup).context("WEB_PUBLIC_URL")?,
    ))
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
