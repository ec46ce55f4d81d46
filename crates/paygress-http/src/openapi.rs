//! The OpenAPI document of the HTTP API (served at `/openapi.json`, kept at
//! `docs/openapi.json`).

use utoipa::OpenApi;

use paygress_core::{
    AccessDetails, Amount, ErrorCode, ErrorReply, HostKey, Offer, ReleaseResult, TierOffer,
    TopUpResult, Unit,
};

use crate::routes;
use crate::wire::{
    AuthBody, AuthResponse, ComponentHealth, HealthBody, PodInfo, SpawnPodBody, TopUpPodBody,
};

/// The API description.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Paygress HTTP API",
        description = "Buy SSH-reachable compute with Cashu ecash. Spawn and top-up follow \
            NUT-24: without a token they answer 402 with a NUT-18 payment request in the \
            X-Cashu header; a retry with a cashuB token in X-Cashu pays. Every error body is \
            {code, message, refund_token?}.",
        license(name = "MIT"),
    ),
    paths(
        routes::service::healthz,
        routes::leases::spawn_pod,
        routes::leases::top_up_pod,
        routes::leases::list_pods,
        routes::leases::get_pod,
        routes::leases::release_pod,
        routes::payments::auth,
        routes::payments::auth_post,
        routes::service::offer,
        routes::service::openapi_json,
    ),
    components(schemas(
        SpawnPodBody,
        AccessDetails,
        HostKey,
        TopUpPodBody,
        TopUpResult,
        ReleaseResult,
        Amount,
        Unit,
        PodInfo,
        AuthBody,
        AuthResponse,
        Offer,
        TierOffer,
        HealthBody,
        ComponentHealth,
        ErrorReply,
        ErrorCode,
    ))
)]
pub struct ApiDoc;

/// The document as pretty-printed JSON with a trailing newline (the form kept in
/// `docs/openapi.json`).
pub fn openapi_json_string() -> Result<String, serde_json::Error> {
    let mut doc = ApiDoc::openapi().to_pretty_json()?;
    doc.push('\n');
    Ok(doc)
}
