//! Lightning addresses (LUD-16): `user@host` resolves to an LNURL-pay endpoint
//! (`https://host/.well-known/lnurlp/user`, LUD-06) whose callback returns a BOLT11
//! invoice for the amount asked. Plain `http` only for loopback hosts (local tests and
//! a wallet on the same machine).

use serde::Deserialize;

use crate::error::CashuError;

/// The LNURL-pay parameters (LUD-06).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PayParams {
    callback: String,
    min_sendable: u64,
    max_sendable: u64,
    tag: String,
}

#[derive(Debug, Deserialize)]
struct InvoiceAnswer {
    pr: Option<String>,
    status: Option<String>,
    reason: Option<String>,
}

fn err(msg: impl Into<String>) -> CashuError {
    CashuError::Config(format!("lightning address: {}", msg.into()))
}

/// The LNURL-pay URL of `address`.
pub fn lnurlp_url(address: &str) -> Result<String, CashuError> {
    let (user, host) = address
        .trim()
        .split_once('@')
        .ok_or_else(|| err("expected user@host"))?;
    let user_ok = !user.is_empty()
        && user
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.+".contains(c));
    if !user_ok || host.is_empty() || host.contains(['/', '?', '#', '@']) {
        return Err(err(format!("{address:?} is not a lightning address")));
    }
    let hostname = host.rsplit_once(':').map_or(host, |(h, _)| h);
    let loopback = hostname == "localhost"
        || hostname
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    let scheme = if loopback { "http" } else { "https" };
    Ok(format!("{scheme}://{host}/.well-known/lnurlp/{user}"))
}

/// Asks `address` for an invoice of `amount_msat`; returns the BOLT11 invoice.
pub async fn invoice_for(address: &str, amount_msat: u64) -> Result<String, CashuError> {
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .map_err(|e| err(e.to_string()))?;
    let url = lnurlp_url(address)?;
    let params: PayParams = http
        .get(&url)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| err(format!("{url}: {e}")))?
        .json()
        .await
        .map_err(|e| err(format!("{url}: not an LNURL-pay answer: {e}")))?;
    if params.tag != "payRequest" {
        return Err(err(format!("{url}: tag {:?}, not payRequest", params.tag)));
    }
    if amount_msat < params.min_sendable || amount_msat > params.max_sendable {
        return Err(err(format!(
            "{amount_msat} msat is outside what the address accepts ({}..={} msat)",
            params.min_sendable, params.max_sendable
        )));
    }
    let mut callback = reqwest::Url::parse(&params.callback)
        .map_err(|e| err(format!("callback {:?}: {e}", params.callback)))?;
    callback
        .query_pairs_mut()
        .append_pair("amount", &amount_msat.to_string());
    let answer: InvoiceAnswer = http
        .get(callback)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| err(format!("callback: {e}")))?
        .json()
        .await
        .map_err(|e| err(format!("callback: {e}")))?;
    if answer.status.as_deref() == Some("ERROR") {
        return Err(err(answer.reason.unwrap_or_else(|| "error".into())));
    }
    let invoice = answer
        .pr
        .ok_or_else(|| err("the callback returned no invoice"))?;
    let parsed: cdk::lightning_invoice::Bolt11Invoice = invoice
        .parse()
        .map_err(|e| err(format!("the callback's invoice does not parse: {e}")))?;
    if parsed.amount_milli_satoshis() != Some(amount_msat) {
        return Err(err(format!(
            "the invoice asks {:?} msat, not the {amount_msat} msat requested",
            parsed.amount_milli_satoshis()
        )));
    }
    Ok(invoice)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_map_to_lnurlp_urls() {
        assert_eq!(
            lnurlp_url("alice@example.com").unwrap(),
            "https://example.com/.well-known/lnurlp/alice"
        );
        assert_eq!(
            lnurlp_url("bob@127.0.0.1:8080").unwrap(),
            "http://127.0.0.1:8080/.well-known/lnurlp/bob"
        );
        assert!(lnurlp_url("no-at-sign").is_err());
        assert!(lnurlp_url("a@b/c").is_err());
        assert!(lnurlp_url("Al ice@example.com").is_err());
    }
}
