//! Buying, extending, releasing and listing leases.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use paygress_core::{
    AccessDetails, ErrorCode, ErrorReply, ReleaseRequest, ReleaseResult, Request, SpawnRequest,
    TopUpRequest, TopUpResult,
};
use tracing::{debug, warn};

use super::responses::{RateLimited, Refusals, TooLarge};
use super::run::parse_lease;
use super::token::payment_token;
use super::{JsonBody, Shared};
use crate::error::ApiError;
use crate::identity::Identity;
use crate::server::AppState;
use crate::wire::{PodInfo, SpawnPodBody, TopUpPodBody};

/// Buy a new lease.
#[utoipa::path(
    post,
    path = "/spawn-pod",
    tag = "leases",
    request_body = SpawnPodBody,
    params(
        ("X-Cashu" = Option<String>, Header, description = "A Cashu token paying for the request (NUT-24); replaces the body's cashu_token", pattern = r"^cashu[AB][A-Za-z0-9_+/=-]+$", max_length = 60000),
        ("Idempotency-Key" = Option<String>, Header, description = "A random value naming this request (e.g. a UUID). Send it again with a retry to get the first answer; the answer (password, change) is only ever repeated to a request carrying it. Without one, a repeat answers 409 without any secret", pattern = r"^[A-Za-z0-9._:+/=-]{16,128}$", min_length = 16, max_length = 128),
    ),
    responses(
        (status = 201, description = "Lease created; log in with these details", body = AccessDetails),
        (status = 400, description = "Body not JSON, not a Cashu token, malformed Idempotency-Key, or unusable token (not accepted mint, wrong unit, too small); nothing was redeemed", body = ErrorReply),
        (status = 402, description = "No token: pay the NUT-18 request in the X-Cashu header", body = ErrorReply,
            headers(("X-Cashu" = String, description = "Encoded NUT-18 payment request (creqA…)"))),
        (status = 409, description = "Token already spent, or a repeat of a paid request without its Idempotency-Key (answered without secrets)", body = ErrorReply),
        TooLarge,
        (status = 422, description = "Well-formed but invalid field (username, image, tier, duration, key), or an Idempotency-Key reused for a different request", body = ErrorReply),
        Refusals,
    )
)]
pub(crate) async fn spawn_pod(
    State(state): Shared,
    headers: HeaderMap,
    JsonBody(body): JsonBody<SpawnPodBody>,
) -> Result<Response, ApiError> {
    let Some(token) = payment_token(&headers, body.cashu_token)? else {
        let minutes = body
            .duration_minutes
            .unwrap_or(state.config.default_duration_minutes);
        let amount = state
            .paygress
            .price(minutes, body.tier.as_deref(), state.quote_unit())?;
        let tier = body.tier.as_deref().unwrap_or("default");
        debug!(minutes, "spawn without payment: 402");
        return Ok(state.payment_required(
            amount,
            &format!("a {minutes}-minute Paygress lease ({tier} tier)"),
        ));
    };
    let id = Identity::of("spawn", &headers, &token)?;
    let mut spawn = SpawnRequest::new(token);
    spawn.ssh_username = body.ssh_username;
    spawn.pod_image = body.pod_image;
    spawn.duration_minutes = body.duration_minutes;
    spawn.tier = body.tier;
    spawn.ssh_public_key = body.ssh_public_key;
    spawn.password_login = body.password_login;
    let request = Request::Spawn(spawn);
    Ok(state.run(id, request).await)
}

/// Extend a lease.
#[utoipa::path(
    post,
    path = "/top-up-pod",
    tag = "leases",
    request_body = TopUpPodBody,
    params(
        ("X-Cashu" = Option<String>, Header, description = "A Cashu token paying for the top-up (NUT-24)", pattern = r"^cashu[AB][A-Za-z0-9_+/=-]+$", max_length = 60000),
        ("Idempotency-Key" = Option<String>, Header, description = "A random value naming this request; see POST /spawn-pod", pattern = r"^[A-Za-z0-9._:+/=-]{16,128}$", min_length = 16, max_length = 128),
    ),
    responses(
        (status = 200, description = "Lease extended", body = TopUpResult),
        (status = 400, description = "Body not JSON, not a Cashu token, malformed Idempotency-Key, or unusable token; nothing was redeemed", body = ErrorReply),
        (status = 402, description = "No token: pay the NUT-18 request in the X-Cashu header (priced for the default duration)", body = ErrorReply,
            headers(("X-Cashu" = String, description = "Encoded NUT-18 payment request (creqA…)"))),
        (status = 404, description = "No such lease", body = ErrorReply),
        (status = 409, description = "Lease expired, already at its maximum, token spent, or a repeat without its Idempotency-Key", body = ErrorReply),
        TooLarge,
        (status = 422, description = "Invalid pod name or body shape, or an Idempotency-Key reused for a different request", body = ErrorReply),
        Refusals,
    )
)]
pub(crate) async fn top_up_pod(
    State(state): Shared,
    headers: HeaderMap,
    JsonBody(body): JsonBody<TopUpPodBody>,
) -> Result<Response, ApiError> {
    let Some(token) = payment_token(&headers, body.cashu_token)? else {
        return top_up_payment_required(&state, &body.pod_name).await;
    };
    let id = Identity::of("top_up", &headers, &token)?;
    let request = Request::TopUp(TopUpRequest {
        pod_name: body.pod_name,
        cashu_token: token,
    });
    Ok(state.run(id, request).await)
}

/// The `402` of a top-up: priced at the lease's tier for the default duration, or less
/// when the lease is near its maximum.
async fn top_up_payment_required(state: &AppState, pod_name: &str) -> Result<Response, ApiError> {
    let (seconds, amount) = state
        .paygress
        .top_up_price(
            pod_name,
            state.config.default_duration_minutes,
            state.quote_unit(),
        )
        .await?;
    Ok(state.payment_required(
        amount,
        &format!(
            "{} more minutes of Paygress lease {pod_name}",
            seconds.div_ceil(60)
        ),
    ))
}

/// End a lease early and get its unused time back.
///
/// Only the lease's owner may: send the `Idempotency-Key` of the request that created the
/// lease in `X-Lease-Key`. The lease is removed first; the reply then carries a Cashu token worth its
/// unused whole seconds at the lease's rate, after the operator's minimum charge
/// (`RELEASE_MIN_CHARGE_MINUTES`, counted from the lease's start) and the mint's fee
/// for issuing it. A retry with the same `Idempotency-Key` gets the first answer (the
/// same token); a new release of a released lease answers `404`.
#[utoipa::path(
    post,
    path = "/pods/{name}/release",
    tag = "leases",
    params(
        ("name" = String, Path, description = "Lease name (pod_name)", pattern = r"^ssh-pod-[a-z0-9]{8}$"),
        ("X-Lease-Key" = String, Header, description = "The Idempotency-Key of the POST /spawn-pod that created the lease: it proves ownership", pattern = r"^[A-Za-z0-9._:+/=-]{16,128}$", min_length = 16, max_length = 128),
        ("Idempotency-Key" = Option<String>, Header, description = "A random value naming this release; send it again with a retry to get the first answer (the refund token)", pattern = r"^[A-Za-z0-9._:+/=-]{16,128}$", min_length = 16, max_length = 128),
    ),
    responses(
        (status = 200, description = "Lease released; the refund token is in the body (absent when nothing is left to refund)", body = ReleaseResult),
        (status = 400, description = "Malformed X-Lease-Key or Idempotency-Key", body = ErrorReply),
        (status = 401, description = "No X-Lease-Key", body = ErrorReply),
        (status = 403, description = "Not the lease's owner", body = ErrorReply),
        (status = 404, description = "No such lease (released already, or its time ran out)", body = ErrorReply),
        (status = 409, description = "Lease expired", body = ErrorReply),
        (status = 422, description = "Not a lease name", body = ErrorReply),
        RateLimited,
        (status = 503, description = "Unavailable: backend or mint down; send the same request again", body = ErrorReply),
    )
)]
pub(crate) async fn release_pod(
    State(state): Shared,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let id = Identity::owner("release", &headers)?;
    let request = Request::Release(ReleaseRequest { pod_name: name });
    Ok(state.run(id, request).await)
}

/// Public information about every lease.
#[utoipa::path(
    get,
    path = "/pods",
    tag = "leases",
    responses(
        (status = 200, description = "Every lease (public fields only)", body = Vec<PodInfo>),
        Refusals,
    )
)]
pub(crate) async fn list_pods(State(state): Shared) -> Result<Json<Vec<PodInfo>>, ApiError> {
    let records = state.paygress.leases().await.map_err(|e| {
        warn!(error = %e, "cannot list leases");
        ApiError::new(ErrorCode::Unavailable, "the backend is unavailable")
    })?;
    let now = state.paygress.now();
    let grace = state.paygress.config().grace;
    Ok(Json(
        records
            .iter()
            .map(|r| PodInfo::from_record(r, now, grace))
            .collect(),
    ))
}

/// Public information about one lease.
#[utoipa::path(
    get,
    path = "/pods/{name}",
    tag = "leases",
    params(("name" = String, Path, description = "Lease name (pod_name)", pattern = r"^ssh-pod-[a-z0-9]{8}$")),
    responses(
        (status = 200, description = "The lease (public fields only)", body = PodInfo),
        (status = 404, description = "No such lease", body = ErrorReply),
        (status = 422, description = "Not a lease name", body = ErrorReply),
        Refusals,
    )
)]
pub(crate) async fn get_pod(
    State(state): Shared,
    Path(name): Path<String>,
) -> Result<Json<PodInfo>, ApiError> {
    let id = parse_lease(&name)?;
    match state.paygress.backend().get(&id).await {
        Ok(Some(r)) => Ok(Json(PodInfo::from_record(
            &r,
            state.paygress.now(),
            state.paygress.config().grace,
        ))),
        Ok(None) => Err(ApiError::new(
            ErrorCode::PodNotFound,
            format!("lease {id} not found"),
        )),
        Err(e) => {
            warn!(error = %e, "backend unavailable");
            Err(ApiError::new(
                ErrorCode::Unavailable,
                "the backend is unavailable",
            ))
        }
    }
}
