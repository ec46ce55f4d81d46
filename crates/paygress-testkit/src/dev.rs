//! The dev stack (`paygress dev`, the end-to-end tests): the whole service on one
//! machine with no configuration: an in-process Nostr relay, an in-process Cashu mint
//! with fake Lightning, the service on the local backend, Nostr and HTTP transports,
//! wired by [`paygress_node::Node`] like `paygress serve`.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use paygress_cashu::testkit::TestMint;
use paygress_cashu::{CashuConfig, CashuVerifier};
use paygress_core::{Paygress, ServiceConfig};
use paygress_http::HttpConfig;
use paygress_local::{LocalBackend, LocalConfig, PortRange, SandboxMode};
use paygress_node::{BackendConfig, HttpListen, MAINTENANCE_INTERVAL, Node, NodeConfig};
use paygress_nostr::NostrConfig;
use paygress_nostr::nostr_sdk::{Keys, PublicKey, RelayUrl, ToBech32};
use paygress_nostr::testkit::TestRelay;
use tracing::info;

/// How to start a [`DevStack`].
#[derive(Debug, Clone)]
pub struct DevOptions {
    /// State directory; `None`: a fresh temporary directory, removed at shutdown.
    pub data_dir: Option<PathBuf>,
    /// HTTP port on 127.0.0.1 (0 picks a free one).
    pub http_port: u16,
    /// SSH ports for leases, `first-last`.
    pub port_range: String,
    /// Run lease shells without bubblewrap even if it is installed.
    pub unsandboxed: bool,
}

impl Default for DevOptions {
    fn default() -> Self {
        Self {
            data_dir: None,
            http_port: 0,
            port_range: "2300-2399".to_owned(),
            unsandboxed: false,
        }
    }
}

/// Whether `PAYGRESS_ALLOW_SHARED_DATA` is set to a true value (`1`, `true`, `yes`, `on`).
pub fn allow_shared_data_from_env() -> bool {
    std::env::var(paygress_store::private::ENV_ALLOW_SHARED_DATA).is_ok_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "1" | "true" | "yes" | "y" | "on"
        )
    })
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
    node: Node,
    _temp: Option<tempfile::TempDir>,
    /// The state directory.
    pub data_dir: PathBuf,
}

impl DevStack {
    /// Starts every component on 127.0.0.1 with the dev terms (60 sat/h, 1 min to 7 days).
    pub async fn start(options: &DevOptions) -> Result<Self> {
        let config = ServiceConfig::default()
            .with_name("paygress-dev")
            .with_ssh_host("127.0.0.1");
        Self::start_with(options, config).await
    }

    /// Starts every component on 127.0.0.1 with the given terms.
    pub async fn start_with(options: &DevOptions, config: ServiceConfig) -> Result<Self> {
        let (temp, data_dir) = match &options.data_dir {
            Some(d) => (None, d.clone()),
            None => {
                let t = tempfile::Builder::new()
                    .prefix("paygress-dev-")
                    .tempdir()
                    .context("creating a temporary data directory")?;
                let p = t.path().to_path_buf();
                // Private like any data directory (the umask may have left it open).
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o700))?;
                (Some(t), p)
            }
        };

        let relay = TestRelay::start().await.context("starting the relay")?;
        let mint = TestMint::start().await.context("starting the mint")?;

        let mut local = LocalConfig::new(&data_dir);
        local.port_range = options.port_range.parse::<PortRange>()?;
        local.bind_host = "127.0.0.1".to_owned();
        let backend = if options.unsandboxed {
            local.sandbox = SandboxMode::Unsandboxed;
            BackendConfig::Local(local)
        } else {
            // Falls back to unsandboxed shells, with a loud warning, when bubblewrap is
            // missing or cannot create a sandbox here.
            local.sandbox = SandboxMode::Bubblewrap;
            BackendConfig::LocalWithFallback(local)
        };
        let keys = Keys::generate();
        let service_key = keys.public_key();
        let node = Node::start(NodeConfig {
            service: config,
            journal_path: data_dir.join("journal.jsonl"),
            cashu: CashuConfig::new(data_dir.join("cashu.db"), [mint.url().to_string()])?,
            allow_shared_data: allow_shared_data_from_env(),
            backend,
            nostr: Some(NostrConfig::new(keys, vec![relay.url()], &data_dir)),
            http: HttpListen {
                addr: std::net::SocketAddr::from(([127, 0, 0, 1], options.http_port)),
                api: true,
                config: HttpConfig::default(),
                web: Some(paygress_http::WebConfig::default()),
                web_addr: None,
                metrics: None,
            },
            maintenance: Some(MAINTENANCE_INTERVAL),
            shutdown_grace: paygress_node::DEFAULT_SHUTDOWN_GRACE,
            data_dir: data_dir.clone(),
        })
        .await?;
        let local = node
            .local
            .clone()
            .context("the dev stack runs the local backend")?;
        let sandboxed = local.sandbox_mode() == SandboxMode::Bubblewrap;
        info!("dev stack ready");
        Ok(Self {
            relay,
            mint,
            service: node.service.clone(),
            wallet: node.wallet.clone(),
            service_key,
            http_url: format!("http://{}", node.http_addr),
            sandboxed,
            local,
            node,
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
    pub async fn shutdown(self) {
        self.node.shutdown().await;
        self.relay.shutdown();
    }
}
