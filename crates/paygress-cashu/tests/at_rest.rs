//! The wallet at rest is private: its directory 0700, the SQLite database, its WAL and
//! shared-memory files and the seed 0600, whatever the process umask (tests run with the
//! usual 022).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use paygress_cashu::testkit::{TestMint, TokenFormat};
use paygress_cashu::{CashuConfig, CashuVerifier};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test]
async fn wallet_files_are_private_while_in_use() {
    let mint = TestMint::start().await.expect("mint");
    let root = tempfile::tempdir().expect("tempdir");
    let config = CashuConfig::new(
        root.path().join("data/wallet/cashu.db"),
        [mint.url().as_str()],
    )
    .expect("config");
    let v = CashuVerifier::open(&config).await.expect("open");
    v.receive(&mint.mint_token(21, TokenFormat::V4).await.expect("token"))
        .await
        .expect("redeem");

    // While the wallet is open (WAL mode) all four files exist.
    let paths = config.private_paths();
    assert_eq!(paths.len(), 4);
    for dir in [root.path().join("data"), root.path().join("data/wallet")] {
        assert_eq!(mode(&dir), 0o700, "{}", dir.display());
    }
    for file in &paths {
        assert_eq!(mode(file), 0o600, "{}", file.display());
    }
    drop(v);

    // Reopening keeps them so.
    let v = CashuVerifier::open(&config).await.expect("reopen");
    v.balances().await.expect("balances");
    for file in &paths {
        if file.exists() {
            assert_eq!(mode(file), 0o600, "{}", file.display());
        }
    }
}
