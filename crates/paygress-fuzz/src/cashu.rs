//! Cashu token strings through the real verifier's offline inspection.

use std::sync::{Arc, LazyLock};

use paygress_cashu::CashuVerifier;
use paygress_core::{CashuToken, MintUrl, PaymentVerifier};

use crate::block_on;

/// The mint the corpus's valid tokens name.
pub const MINT: &str = "http://mint.test";

/// A verifier on an in-memory wallet store, accepting [`MINT`] (and `https://mint.test`).
static VERIFIER: LazyLock<CashuVerifier> = LazyLock::new(|| {
    let db = block_on(cdk_sqlite::wallet::memory::empty()).expect("in-memory wallet store");
    CashuVerifier::with_database(
        Arc::new(db),
        [7; 64],
        vec![MintUrl::new(MINT), MintUrl::new("https://mint.test")],
    )
});

/// Inspects the input as a token (`cashuA…` JSON, `cashuB…` CBOR, anything else) as the
/// service does before redeeming. An accepted token is worth something, at an accepted
/// mint.
pub fn cashu_token(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    let verifier = &*VERIFIER;
    match verifier.inspect(&CashuToken::new(text)) {
        Ok(info) => {
            assert!(
                info.amount.value > 0,
                "an accepted token is worth something"
            );
            assert!(verifier.mints().contains(&info.mint));
            true
        }
        Err(e) => {
            let _ = e.to_string();
            false
        }
    }
}
