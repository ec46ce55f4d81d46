//! `paygress dev`: the whole stack on one machine with no configuration: an in-process
//! Nostr relay, an in-process Cashu mint with fake Lightning, the service on the local
//! backend, Nostr and HTTP transports.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use paygress_cashu::testkit::TestMint;
use paygress_cashu::{CashuConfig, CashuVerifier};
use paygress_core::{DynJournal, DynPodBackend, Paygress, ServiceConfig};
use paygress_local::{LocalBackend, LocalConfig, PortRange, SandboxMode};
use paygress_nostr::nostr_sdk::{Keys, PublicKey, RelayUrl, ToBech32};
use paygress_nostr::testkit::TestRelay;
use paygress_nostr::{NostrConfig, NostrTransport};
use paygress_store::{FileJournal, private};
use tokio::task::JoinSet;
use tracing::{info, warn};

/// Options of `paygress dev`.
#[derive(Debug, Clone, Args)]
pub struct DevArgs {
    /// After starting, play a buyer end to end (pay, log in, top up) and exit.
    #[arg(long)]
    pub demo: bool,
    /// State directory [default: a fresh temporary directory, removed at exit].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// HTTP port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    pub http_port: u16,
    /// SSH ports for leases.
    #[arg(long, default_value = "2300-2399")]
    pub port_range: String,
    /// Run lease shells without bubblewrap even if it is installed.
    #[arg(long)]
    pub unsandboxed: bool,
}

/// A running dev stack.
pub struct DevStack {
    /// The in-process relay.
    pub relay: TestRelay,
    /// The in-process mint.
    pub mint: TestMint,
    /// The service.
    pub service: Arc<Paygress>,
    /// The service's wallet.
    pub wallet: Arc<CashuVerifier>,
    /// The service's Nostr public key.
    pub service_key: PublicKey,
    /// The HTTP API's base URL.
    pub http_url: String,
    /// Whether lease shells run in bubblewrap.
    pub sandboxed: bool,
    /// The local backend (to inspect leases' processes).
    pub local: Arc<LocalBackend>,
    nostr: Arc<NostrTransport>,
    tasks: JoinSet<()>,
    _temp: Option<tempfile::TempDir>,
    /// The state directory.
    pub data_dir: PathBuf,
}

impl DevStack {
    /// Starts every component on 127.0.0.1 with the dev terms (60 sat/h, 1 min to 7 days).
    pub async fn start(args: &DevArgs) -> Result<Self> {
        let config = ServiceConfig {
            name: "paygress-dev".to_owned(),
            ssh_host: "127.0.0.1".to_owned(),
            ..ServiceConfig::default()
        };
        Self::start_with(args, config).await
    }

    /// Starts every component on 127.0.0.1 with the given terms.
    pub async fn start_with(args: &DevArgs, config: ServiceConfig) -> Result<Self> {
        let (temp, data_dir) = match &args.data_dir {
            Some(d) => (None, d.clone()),
            None => {
                let t = tempfile::Builder::new()
                    .prefix("paygress-dev-")
                    .tempdir()
                    .context("creating a temporary data directory")?;
                let p = t.path().to_path_buf();
                (Some(t), p)
            }
        };
        if args.data_dir.is_some() {
            let paths = crate::config::private_paths(
                &data_dir,
                &data_dir.join("journal.jsonl"),
                &data_dir.join("cashu.db"),
            );
            private::check_private(&paths, crate::config::allow_shared_data_from_env())?;
        }
        private::create_private_dir(&data_dir)
            .with_context(|| format!("creating {}", data_dir.display()))?;

        let relay = TestRelay::start().await.context("starting the relay")?;
        let mint = TestMint::start().await.context("starting the mint")?;

        let cashu = CashuConfig::new(data_dir.join("cashu.db"), [mint.url().to_string()])?;
        let wallet = CashuVerifier::open(&cashu).await?;
        for (mint, unit, e) in wallet.warm_up().await {
            warn!(%mint, %unit, error = %e, "test mint not reachable");
        }
        let wallet = Arc::new(wallet);

        let mut local = LocalConfig::new(&data_dir);
        local.port_range = args.port_range.parse::<PortRange>()?;
        local.bind_host = "127.0.0.1".to_owned();
        let local = if args.unsandboxed {
            local.sandbox = SandboxMode::Unsandboxed;
            LocalBackend::start(local).await?
        } else {
            // Falls back to unsandboxed shells, with a loud warning, when bubblewrap is
            // missing or cannot create a sandbox here.
            local.sandbox = SandboxMode::Bubblewrap;
            LocalBackend::start_with_fallback(local).await?
        };
        let sandboxed = local.sandbox_mode() == SandboxMode::Bubblewrap;
        let local = Arc::new(local);
        let backend: DynPodBackend = local.clone();

        let keys = Keys::generate();
        let service_key = keys.public_key();
        let nostr = Arc::new(
            NostrTransport::start(NostrConfig::new(keys, vec![relay.url()], &data_dir)).await?,
        );
        let journal: DynJournal = Arc::new(FileJournal::open(data_dir.join("journal.jsonl"))?);
        let service = Arc::new(
            Paygress::builder(config, wallet.clone(), backend)
                .journal(journal)
                .notifier(Arc::new(nostr.notifier()))
                .build(),
        );
        let mut tasks = JoinSet::new();
        tasks.spawn(service.clone().serve(nostr.clone()));
        tasks.spawn(
            service
                .clone()
                .run_maintenance(crate::serve::MAINTENANCE_INTERVAL),
        );

        let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.http_port)).await?;
        let http_url = format!("http://{}", listener.local_addr()?);
        let web = paygress_http::WebConfig {
            npub: service_key.to_bech32().ok(),
            host_key_fingerprint: local
                .host_public_key()
                .map(|k| paygress_http::web::host_key_fingerprint(&k)),
            ..paygress_http::WebConfig::default()
        };
        let api = paygress_http::HttpApi::new(
            service.clone(),
            wallet.clone(),
            paygress_http::HttpConfig::default(),
        )
        .with_web(paygress_http::WebUi::new(
            service.clone(),
            wallet.clone(),
            web,
        ));
        tasks.spawn(async move {
            if let Err(e) = api.serve(listener, std::future::pending()).await {
                warn!(error = %e, "HTTP server stopped");
            }
        });
        info!("dev stack ready");
        Ok(Self {
            relay,
            mint,
            service,
            wallet,
            service_key,
            http_url,
            sandboxed,
            local,
            nostr,
            tasks,
            _temp: temp,
            data_dir,
        })
    }

    /// The relay's URL.
    pub fn relay_url(&self) -> RelayUrl {
        self.relay.url()
    }

    /// Mints a test token for a person to spend by hand and saves it in the data dir.
    pub async fn mint_buyer_token(&self, sats: u64) -> Result<PathBuf> {
        let token = self
            .mint
            .mint_token(sats, paygress_cashu::testkit::TokenFormat::V4)
            .await
            .context("minting a test token")?;
        let path = self.data_dir.join("buyer-token.cashu");
        // Bearer money: private like the rest of the data directory.
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("writing {}", path.display()))?;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        file.write_all(format!("{}\n", token.expose()).as_bytes())?;
        Ok(path)
    }

    /// Prints where everything is and what to try.
    pub fn print_banner(&self) {
        let npub = self
            .service_key
            .to_bech32()
            .unwrap_or_else(|_| self.service_key.to_hex());
        println!();
        println!("Paygress dev stack is running (Ctrl-C to stop)");
        println!("  service npub : {npub}");
        println!("  service hex  : {}", self.service_key.to_hex());
        println!("  relay        : {}", self.relay.url());
        println!("  mint         : {}", self.mint.url());
        println!("  HTTP API     : {}", self.http_url);
        println!("  web page     : {}/", self.http_url);
        println!("  data dir     : {}", self.data_dir.display());
        println!(
            "  sandbox      : {}",
            if self.sandboxed {
                "bubblewrap"
            } else {
                "NONE (unsandboxed)"
            }
        );
        println!();
        println!("Try over HTTP:");
        println!("  curl -s {}/offer", self.http_url);
        println!(
            "  curl -s -i -X POST {}/spawn-pod   # 402 with an X-Cashu payment request",
            self.http_url
        );
        println!();
    }

    /// Prints the buyer commands to try by hand with the token at `token`.
    pub fn print_buyer_commands(&self, token: &std::path::Path) {
        let exe = std::env::current_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "paygress".to_owned());
        let conf = self.data_dir.join("buyer");
        println!(
            "Try as a buyer (a 1000 sat test token is in {}):",
            token.display()
        );
        println!("  export PAYGRESS_CONFIG_DIR={}", conf.display());
        println!("  {exe} keygen");
        println!(
            "  {exe} request --service {} --relay {} --token {} --duration 10m --user alice",
            self.service_key.to_hex(),
            self.relay.url(),
            token.display()
        );
        println!(
            "  # then ssh with the printed command; change is saved under $PAYGRESS_CONFIG_DIR/tokens"
        );
        println!();
    }

    /// Stops everything.
    pub async fn shutdown(mut self) {
        self.nostr.shutdown().await;
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
        self.relay.shutdown();
    }
}

/// Runs `paygress dev`.
pub async fn run(args: DevArgs) -> Result<()> {
    let stack = DevStack::start(&args).await?;
    stack.print_banner();
    if args.demo {
        let result = crate::demo::run(&stack).await;
        stack.shutdown().await;
        return result;
    }
    let token = stack.mint_buyer_token(1000).await?;
    stack.print_buyer_commands(&token);
    crate::serve::shutdown_signal().await;
    stack.shutdown().await;
    Ok(())
}
