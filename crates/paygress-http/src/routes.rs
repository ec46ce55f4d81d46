//! The endpoint handlers.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequest, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use paygress_core::{
    AccessDetails, Amount, CashuToken, ErrorCode, ErrorReply, LeaseId, Offer, Paygress,
    ReleaseRequest, ReleaseResult, Reply, Request, Requester, SpawnRequest, TopUpRequest,
    TopUpResult, Unit,
};
use serde::de::DeserializeOwned;
use tracing::{debug, warn};

use crate::error::ApiError;
use crate::identity::{Identity, fingerprint};
use crate::openapi::openapi_json_string;
use crate::server::AppState;
use crate::wire::{
    AuthBody, AuthQuery, AuthResponse, ComponentHealth, HealthBody, PodInfo, SpawnPodBody,
    TopUpPodBody,
};

/// The NUT-24 header: a payment request in a `402`, a token in a retry.
pub const X_CASHU: &str = "x-cashu";

type Shared = State<Arc<AppState>>;

// ---------------------------------------------------------------- extractors

/// A JSON body, parsed whatever the content type; an empty body reads as `{}`. Syntax
/// errors answer `400`, well-formed JSON of the wrong shape `422`, a body over the limit
/// `413`, all with the typed error body.
pub(crate) struct JsonBody<T>(pub(crate) T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(|r| {
            let message = if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                "request body too large".to_owned()
            } else {
                format!("could not read the request body: {}", r.body_text())
            };
            ApiError::with_status(r.status(), ErrorCode::InvalidRequest, message)
        })?;
        let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        serde_json::from_slice(text).map(JsonBody).map_err(|e| {
            let status = match e.classify() {
                serde_json::error::Category::Data => StatusCode::UNPROCESSABLE_ENTITY,
                _ => StatusCode::BAD_REQUEST,
            };
            ApiError::with_status(
                status,
                ErrorCode::InvalidRequest,
                format!("invalid JSON body: {e}"),
            )
        })
    }
}

// ---------------------------------------------------------------- helpers

/// The pattern every Cashu token must match: a `cashuA` (V3, JSON) or `cashuB` (V4,
/// CBOR) prefix and base64 or base64url characters.
pub const TOKEN_PATTERN: &str = r"^cashu[AB][A-Za-z0-9_+/=-]+$";
/// The longest token accepted, in characters.
pub const MAX_TOKEN_CHARS: usize = 60_000;

/// Refuses, untouched, a token that cannot be a Cashu token ([`TOKEN_PATTERN`],
/// [`MAX_TOKEN_CHARS`]).
fn check_token_format(token: &CashuToken) -> Result<(), ApiError> {
    let text = token.expose();
    let body = text
        .strip_prefix("cashuA")
        .or_else(|| text.strip_prefix("cashuB"));
    let ok = text.len() <= MAX_TOKEN_CHARS
        && body.is_some_and(|b| {
            !b.is_empty()
                && b.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || b"_+/=-".contains(&c))
        });
    if ok {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::InvalidToken,
            format!(
                "not a Cashu token: expected cashuA… or cashuB… (base64url, at most \
                 {MAX_TOKEN_CHARS} characters)"
            ),
        ))
    }
}

/// The token from the `X-Cashu` header or the body; both present must agree, and it
/// must look like a Cashu token.
fn payment_token(
    headers: &HeaderMap,
    body: Option<CashuToken>,
) -> Result<Option<CashuToken>, ApiError> {
    let token = header_or_body_token(headers, body)?;
    if let Some(t) = &token {
        check_token_format(t)?;
    }
    Ok(token)
}

fn header_or_body_token(
    headers: &HeaderMap,
    body: Option<CashuToken>,
) -> Result<Option<CashuToken>, ApiError> {
    let header = match headers.get(X_CASHU) {
        None => None,
        Some(v) => {
            let text = v.to_str().map_err(|_| {
                ApiError::new(ErrorCode::InvalidToken, "the X-Cashu header is not ASCII")
            })?;
            let text = text.trim();
            (!text.is_empty()).then(|| CashuToken::new(text))
        }
    };
    match (header, body) {
        (Some(h), Some(b)) if h != b => Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "the X-Cashu header and cashu_token differ; send the token once",
        )),
        (Some(h), _) => Ok(Some(h)),
        (None, b) => Ok(b.filter(|t| !t.is_empty())),
    }
}

impl AppState {
    fn quote_unit(&self) -> Unit {
        self.payments
            .accepted_units()
            .first()
            .copied()
            .unwrap_or(Unit::Sat)
    }

    /// `402` with a NUT-18 payment request for `amount` in `X-Cashu` (NUT-24).
    fn payment_required(&self, amount: Amount, description: &str) -> Response {
        let mut response = ApiError::with_status(
            StatusCode::PAYMENT_REQUIRED,
            ErrorCode::InsufficientPayment,
            format!(
                "payment required: {amount} for {description}; pay with a Cashu token in the \
                 X-Cashu header (NUT-24) or the cashu_token field"
            ),
        )
        .into_response();
        match self.payments.payment_request(amount, description) {
            Ok(request) => match HeaderValue::from_str(&request) {
                Ok(v) => {
                    response.headers_mut().insert(X_CASHU, v);
                }
                Err(_) => warn!("payment request is not a valid header value"),
            },
            Err(e) => warn!(error = %e, "no payment request for the 402 answer"),
        }
        response
    }

    /// Runs a paid request in its own task (a dropped connection cannot cancel it) and
    /// turns the reply into a response. A repeat the requester may not see the answer of
    /// is refused before it reaches the service (see [`crate::identity`]).
    async fn run(&self, id: Identity, request: Request) -> Response {
        let admission = match self.admissions.admit(&id, fingerprint(&request)) {
            Ok(a) => a,
            Err(e) => return e.into_response(),
        };
        let Ok(permit) = self.permits.clone().acquire_owned().await else {
            return ApiError::new(ErrorCode::Unavailable, "the service is shutting down")
                .into_response();
        };
        let paygress = self.paygress.clone();
        let task = tokio::spawn(async move {
            let reply = paygress.handle(&id.key, &id.sender, request).await;
            let reply = withhold_foreign_lease(&paygress, &id.sender, reply).await;
            drop(permit);
            if id.keyed || holds_secret(&reply) {
                admission.keep();
            }
            reply
        });
        match task.await {
            Ok(reply) => reply_response(reply),
            Err(e) => {
                warn!(error = %e, "request task failed");
                ApiError::new(ErrorCode::Internal, "the request failed unexpectedly")
                    .into_response()
            }
        }
    }
}

/// Whether `reply` carries something only its requester may see.
fn holds_secret(reply: &Reply) -> bool {
    match reply {
        Reply::AccessDetails(_) | Reply::TopUp(_) => true,
        Reply::Error(e) => e.refund_token.is_some(),
        Reply::Released(r) => r.refund_token.is_some(),
        Reply::Status(_) => false,
    }
}

/// Login details are only ever answered to the lease's owner: a stored reply replayed
/// for somebody else (e.g. a keyless repeat after a restart, which this process has no
/// record of) is replaced by an answer without secrets.
async fn withhold_foreign_lease(paygress: &Paygress, sender: &Requester, reply: Reply) -> Reply {
    let Reply::AccessDetails(details) = &reply else {
        return reply;
    };
    match paygress.backend().get(&details.pod_name).await {
        Ok(Some(record)) if record.owner == *sender => reply,
        Ok(_) => Reply::error(
            ErrorCode::TokenAlreadySpent,
            "this token already paid for an earlier request; its answer is only repeated to \
             a request carrying that request's Idempotency-Key",
        ),
        Err(e) => {
            warn!(error = %e, "cannot confirm the lease owner; withholding the login details");
            Reply::error(
                ErrorCode::Unavailable,
                "the backend is unavailable; send the same request (same Idempotency-Key) \
                 again to get its answer",
            )
        }
    }
}

fn reply_response(reply: Reply) -> Response {
    match reply {
        Reply::AccessDetails(a) => (StatusCode::CREATED, Json(a)).into_response(),
        Reply::TopUp(t) => (StatusCode::OK, Json(t)).into_response(),
        Reply::Released(r) => (StatusCode::OK, Json(r)).into_response(),
        Reply::Error(e) => ApiError::from_reply(e).into_response(),
        Reply::Status(_) => {
            ApiError::new(ErrorCode::Internal, "unexpected status reply").into_response()
        }
    }
}

fn parse_lease(name: &str) -> Result<LeaseId, ApiError> {
    name.parse::<LeaseId>()
        .map_err(|e| ApiError::new(ErrorCode::InvalidPodName, e.to_string()))
}

// ---------------------------------------------------------------- handlers

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
        (status = 413, description = "Body too large", body = ErrorReply),
        (status = 422, description = "Well-formed but invalid field (username, image, tier, duration, key), or an Idempotency-Key reused for a different request", body = ErrorReply),
        (status = 429, description = "Rate limited (per client IP)", body = ErrorReply),
        (status = 503, description = "Unavailable: mint or backend down, timed out, or an internal failure (the only 5xx answered)", body = ErrorReply),
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
    let request = Request::Spawn(SpawnRequest {
        cashu_token: token,
        ssh_username: body.ssh_username,
        pod_image: body.pod_image,
        duration_minutes: body.duration_minutes,
        tier: body.tier,
        ssh_public_key: body.ssh_public_key,
        password_login: body.password_login,
    });
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
        (status = 413, description = "Body too large", body = ErrorReply),
        (status = 422, description = "Invalid pod name or body shape, or an Idempotency-Key reused for a different request", body = ErrorReply),
        (status = 429, description = "Rate limited (per client IP)", body = ErrorReply),
        (status = 503, description = "Unavailable: mint or backend down, timed out, or an internal failure (the only 5xx answered)", body = ErrorReply),
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
        (status = 429, description = "Rate limited (per client IP)", body = ErrorReply),
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
        (status = 429, description = "Rate limited (per client IP)", body = ErrorReply),
        (status = 503, description = "Unavailable: mint or backend down, timed out, or an internal failure (the only 5xx answered)", body = ErrorReply),
    )
)]
pub(crate) async fn list_pods(State(state): Shared) -> Result<Json<Vec<PodInfo>>, ApiError> {
    let records = state.paygress.leases().await.map_err(|e| {
        warn!(error = %e, "cannot list leases");
        ApiError::new(ErrorCode::Unavailable, "the backend is unavailable")
    })?;
    let now = state.paygress.now();
    Ok(Json(
        records
            .iter()
            .map(|r| PodInfo::from_record(r, now))
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
        (status = 429, description = "Rate limited (per client IP)", body = ErrorReply),
        (status = 503, description = "Unavailable: mint or backend down, timed out, or an internal failure (the only 5xx answered)", body = ErrorReply),
    )
)]
pub(crate) async fn get_pod(
    State(state): Shared,
    Path(name): Path<String>,
) -> Result<Json<PodInfo>, ApiError> {
    let id = parse_lease(&name)?;
    match state.paygress.backend().get(&id).await {
        Ok(Some(r)) => Ok(Json(PodInfo::from_record(&r, state.paygress.now()))),
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

/// Check a token without redeeming it.
#[utoipa::path(
    get,
    path = "/auth",
    tag = "payments",
    params(
        AuthQuery,
        ("X-Cashu" = Option<String>, Header, description = "The token, instead of the query (keeps it out of URLs)", pattern = r"^cashu[AB][A-Za-z0-9_+/=-]+$", max_length = 60000),
    ),
    responses(
        (status = 200, description = "What the token is worth and buys", body = AuthResponse),
        (status = 400, description = "No token, not a Cashu token, undecodable token, not accepted mint or unit, or an invalid query", body = ErrorReply),
        (status = 409, description = "Token already spent", body = ErrorReply),
        (status = 429, description = "Rate limited (per client IP)", body = ErrorReply),
        (status = 503, description = "Unavailable: mint or backend down, timed out, or an internal failure (the only 5xx answered)", body = ErrorReply),
    )
)]
pub(crate) async fn auth(
    State(state): Shared,
    headers: HeaderMap,
    query: Result<Query<AuthQuery>, QueryRejection>,
) -> Result<Json<AuthResponse>, ApiError> {
    let Query(query) = query.map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidRequest,
            format!("invalid query: {}", e.body_text()),
        )
    })?;
    let token = payment_token(&headers, query.token)?.ok_or_else(|| {
        ApiError::new(
            ErrorCode::InvalidRequest,
            "pass the token as ?token= or in the X-Cashu header",
        )
    })?;
    let quote = state
        .paygress
        .quote_token(&token, query.duration_minutes)
        .await?;
    Ok(Json(quote.into()))
}

/// Check a token without redeeming it, keeping it out of URLs and access logs.
#[utoipa::path(
    post,
    path = "/auth",
    tag = "payments",
    request_body = AuthBody,
    params(
        ("X-Cashu" = Option<String>, Header, description = "The token, instead of the body's `token`", pattern = r"^cashu[AB][A-Za-z0-9_+/=-]+$", max_length = 60000),
    ),
    responses(
        (status = 200, description = "What the token is worth and buys", body = AuthResponse),
        (status = 400, description = "No token, not a Cashu token, undecodable token, not accepted mint or unit, or a body that is not JSON", body = ErrorReply),
        (status = 409, description = "Token already spent", body = ErrorReply),
        (status = 413, description = "Body too large", body = ErrorReply),
        (status = 422, description = "Well-formed JSON of the wrong shape", body = ErrorReply),
        (status = 429, description = "Rate limited (per client IP)", body = ErrorReply),
        (status = 503, description = "Unavailable: mint or backend down, timed out, or an internal failure (the only 5xx answered)", body = ErrorReply),
    )
)]
pub(crate) async fn auth_post(
    State(state): Shared,
    headers: HeaderMap,
    JsonBody(body): JsonBody<AuthBody>,
) -> Result<Json<AuthResponse>, ApiError> {
    let token = payment_token(&headers, body.token)?.ok_or_else(|| {
        ApiError::new(
            ErrorCode::InvalidRequest,
            "pass the token as the body's token field or in the X-Cashu header",
        )
    })?;
    let quote = state
        .paygress
        .quote_token(&token, body.duration_minutes)
        .await?;
    Ok(Json(quote.into()))
}

/// What the service sells.
#[utoipa::path(
    get,
    path = "/offer",
    tag = "service",
    responses(
        (status = 200, description = "The offer (the same one the Nostr transport publishes)", body = Offer),
        (status = 429, description = "Rate limited (per client IP)", body = ErrorReply),
        (status = 503, description = "Unavailable: mint or backend down, timed out, or an internal failure (the only 5xx answered)", body = ErrorReply),
    )
)]
pub(crate) async fn offer(State(state): Shared) -> Json<Offer> {
    Json(state.paygress.offer())
}

/// Liveness, and which transports and backends are up.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "service",
    responses(
        (status = 200, description = "Everything is up", body = HealthBody),
        (status = 503, description = "A component is down", body = HealthBody),
    )
)]
pub(crate) async fn healthz(State(state): Shared) -> Response {
    let backend = state.paygress.backend();
    let backend_up = matches!(
        tokio::time::timeout(state.config.health_check_timeout, backend.list()).await,
        Ok(Ok(_))
    );
    let transports = match &state.transports {
        Some(probe) => probe(),
        None => vec![ComponentHealth {
            name: "http".to_owned(),
            up: true,
        }],
    };
    let all_up = backend_up && transports.iter().all(|t| t.up);
    let body = HealthBody {
        status: if all_up { "ok" } else { "degraded" }.to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        backend: ComponentHealth {
            name: backend.name().to_owned(),
            up: backend_up,
        },
        transports,
    };
    let status = if all_up {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// This API's OpenAPI document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "service",
    responses(
        (status = 200, description = "OpenAPI 3.1 document", content_type = "application/json"),
        (status = 429, description = "Rate limited (per client IP)", body = ErrorReply),
        (status = 503, description = "Unavailable: mint or backend down, timed out, or an internal failure (the only 5xx answered)", body = ErrorReply),
    )
)]
pub(crate) async fn openapi_json() -> Response {
    match openapi_json_string() {
        Ok(doc) => ([(header::CONTENT_TYPE, "application/json")], doc).into_response(),
        Err(e) => {
            warn!(error = %e, "openapi document");
            ApiError::new(ErrorCode::Unavailable, "no OpenAPI document").into_response()
        }
    }
}

/// Unknown paths.
pub(crate) async fn not_found() -> ApiError {
    ApiError::with_status(
        StatusCode::NOT_FOUND,
        ErrorCode::InvalidRequest,
        "no such endpoint",
    )
}
