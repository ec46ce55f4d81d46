//! NUT-18 payment requests whose transport is an HTTP POST to this service, and the
//! payloads wallets post to it.

use std::str::FromStr;

use cashu::nuts::Token;
use cashu::nuts::nut18::{PaymentRequest, PaymentRequestPayload, Transport, TransportType};
use paygress_core::{Amount, CashuToken, DynPaymentVerifier, ErrorCode};
use qrcode::QrCode;
use qrcode::render::svg;

use crate::error::ApiError;

/// The payment request of `amount` for `description`, named `pay_id`, paid by an HTTP
/// POST of the payload to `target`. The verifier encodes the mints and unit it accepts.
pub(crate) fn payment_request(
    payments: &DynPaymentVerifier,
    amount: Amount,
    description: &str,
    pay_id: &str,
    target: &str,
) -> Result<String, ApiError> {
    let unavailable = |what: &str| {
        ApiError::new(
            ErrorCode::Unavailable,
            format!("cannot make a payment request: {what}"),
        )
    };
    let encoded = payments
        .payment_request(amount, description)
        .map_err(|_| unavailable("the wallet refused"))?;
    let mut request =
        PaymentRequest::from_str(&encoded).map_err(|_| unavailable("undecodable request"))?;
    request.payment_id = Some(pay_id.to_owned());
    request.transports = vec![Transport {
        _type: TransportType::HttpPost,
        target: target.to_owned(),
        tags: vec![],
    }];
    Ok(request.to_string())
}

/// The token a wallet's payload carries, and the payment id it names.
pub(crate) fn payload_token(body: &[u8]) -> Result<(Option<String>, CashuToken), ApiError> {
    let payload: PaymentRequestPayload = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidRequest,
            format!("not a NUT-18 payment payload: {e}"),
        )
    })?;
    if payload.proofs.is_empty() {
        return Err(ApiError::new(
            ErrorCode::InvalidToken,
            "the payload has no proofs",
        ));
    }
    let token = Token::new(payload.mint, payload.proofs, payload.memo, payload.unit);
    Ok((payload.id, CashuToken::new(token.to_string())))
}

/// `text` as a QR code in SVG, scaled by the page.
pub(crate) fn qr_svg(text: &str) -> Option<String> {
    let code = QrCode::new(text.as_bytes()).ok()?;
    Some(
        code.render::<svg::Color<'_>>()
            .min_dimensions(256, 256)
            .quiet_zone(true)
            .dark_color(svg::Color("#000000"))
            .light_color(svg::Color("#ffffff"))
            .build(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qr_encodes_a_long_request() {
        let svg = qr_svg(&format!("creqA{}", "x".repeat(600))).unwrap();
        assert!(
            svg.starts_with("<?xml") || svg.starts_with("<svg"),
            "{svg:.40}"
        );
        assert!(svg.contains("<path") || svg.contains("<rect"));
    }

    #[test]
    fn payload_without_proofs_is_refused() {
        let body = br#"{"id":"ab","mint":"http://127.0.0.1:1","unit":"sat","proofs":[]}"#;
        assert!(payload_token(body).is_err());
        assert!(payload_token(b"{}").is_err());
    }
}
