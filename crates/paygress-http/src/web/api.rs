//! The page's JSON endpoints and the NUT-18 payment target.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use paygress_core::{
    CashuToken, ErrorCode, Reply, Request, RequestKey, Requester, SpawnRequest, TopUpRequest, Unit,
    Username,
};
use serde::{Deserialize, Serialize};
use tracing::{debug, warn};

use super::WebState;
use super::nut18;
use super::store::{Data, Entry, PayKind, Pending, SavedToken, new_pay_id, new_secret};
use crate::error::ApiError;
use crate::routes::JsonBody;

type Shared = State<Arc<WebState>>;

/// A JSON answer no cache keeps (it may hold a password or tokens).
pub(crate) fn private_json<T: Serialize>(status: StatusCode, body: &T) -> Response {
    let mut r = (status, Json(body)).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

impl WebState {
    fn unit(&self) -> Unit {
        self.payments
            .accepted_units()
            .first()
            .copied()
            .unwrap_or(Unit::Sat)
    }

    /// Where wallets post payments: the configured public URL, else the page's own
    /// origin as the browser reached it.
    fn pay_target(&self, headers: &HeaderMap, pay_id: &str) -> String {
        let base = match &self.config.public_url {
            Some(u) => u.clone(),
            None => {
                let h = |n: &str| {
                    headers
                        .get(n)
                        .and_then(|v| v.to_str().ok())
                        .map(|v| v.split(',').next().unwrap_or("").trim().to_owned())
                        .filter(|v| !v.is_empty())
                };
                let proto = h("x-forwarded-proto")
                    .filter(|p| p == "https" || p == "http")
                    .unwrap_or_else(|| "http".to_owned());
                let host = h("x-forwarded-host")
                    .or_else(|| h("host"))
                    .unwrap_or_else(|| "localhost".to_owned());
                format!("{proto}://{host}")
            }
        };
        format!("{base}/web/pay/{pay_id}")
    }

    fn entry(&self, secret: &str) -> Result<Arc<Entry>, ApiError> {
        self.store.get(secret.trim()).ok_or_else(|| {
            ApiError::with_status(
                StatusCode::NOT_FOUND,
                ErrorCode::PodNotFound,
                "no lease has this link (links are forgotten when the service restarts)",
            )
        })
    }
}

// ---------------------------------------------------------------- bodies

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OrderBody {
    #[serde(default)]
    tier: Option<String>,
    duration_minutes: u64,
    #[serde(default)]
    ssh_username: Option<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct OrderCreated {
    /// The lease's secret: its page is `/lease#<secret>`.
    secret: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SecretBody {
    secret: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PayBody {
    secret: String,
    token: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TopUpBody {
    secret: String,
    duration_minutes: u64,
}

/// A payment request as the page shows it.
#[derive(Debug, Serialize)]
pub(crate) struct PendingView {
    request: String,
    qr_svg: Option<String>,
    amount: u64,
    unit: String,
    minutes: u64,
}

impl From<&Pending> for PendingView {
    fn from(p: &Pending) -> Self {
        Self {
            request: p.request.clone(),
            qr_svg: nut18::qr_svg(&p.request),
            amount: p.amount.value,
            unit: p.amount.unit.to_string(),
            minutes: p.minutes,
        }
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct AccessView {
    pod_name: String,
    username: String,
    password: String,
    host: String,
    port: u16,
    ssh_command: String,
    instructions: Vec<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct TokenView {
    kind: &'static str,
    token: String,
}

#[derive(Debug, Serialize)]
pub(crate) struct ErrorView {
    code: ErrorCode,
    message: String,
}

/// Everything the lease page shows.
#[derive(Debug, Serialize)]
pub(crate) struct LeaseView {
    /// `awaiting_payment`, `active` or `expired`.
    state: &'static str,
    tier: String,
    minutes: u64,
    username: Option<String>,
    order: Option<PendingView>,
    top_up: Option<PendingView>,
    access: Option<AccessView>,
    now: Timestamp,
    expires_at: Option<Timestamp>,
    tokens: Vec<TokenView>,
    error: Option<ErrorView>,
    /// Whether the service can end a lease early and refund the unused time (core has
    /// no such operation yet).
    release_supported: bool,
}

fn view(data: &Data, now: Timestamp) -> LeaseView {
    let state = match (&data.access, data.expires_at) {
        (None, _) => "awaiting_payment",
        (Some(_), Some(exp)) if now < exp => "active",
        _ => "expired",
    };
    LeaseView {
        state,
        tier: data.tier.clone(),
        minutes: data.minutes,
        username: data.username.clone(),
        order: data.order.as_ref().map(Into::into),
        top_up: data.top_up.as_ref().map(Into::into),
        access: data.access.as_ref().map(|a| {
            let port = a.node_port.unwrap_or(a.ssh_port);
            AccessView {
                pod_name: a.pod_name.to_string(),
                username: a.ssh_username.clone(),
                password: a.ssh_password.expose().to_owned(),
                host: a.ssh_host.clone(),
                port,
                ssh_command: format!("ssh -p {port} {}@{}", a.ssh_username, a.ssh_host),
                instructions: a.instructions.clone(),
            }
        }),
        now,
        expires_at: data.expires_at,
        tokens: data
            .tokens
            .iter()
            .map(|t| TokenView {
                kind: t.kind,
                token: t.token.expose().to_owned(),
            })
            .collect(),
        error: data.error.as_ref().map(|(code, message)| ErrorView {
            code: *code,
            message: message.clone(),
        }),
        release_supported: false,
    }
}

// ---------------------------------------------------------------- handlers

/// `POST /web/api/orders`: prices the chosen tier and duration and opens a lease page
/// with its payment request.
pub(crate) async fn create_order(
    State(state): Shared,
    headers: HeaderMap,
    JsonBody(body): JsonBody<OrderBody>,
) -> Result<Response, ApiError> {
    let username = match body.ssh_username.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(u) => Some(
            u.parse::<Username>()
                .map_err(|e| ApiError::new(ErrorCode::InvalidUsername, e.to_string()))?
                .to_string(),
        ),
    };
    let amount = state
        .paygress
        .price(body.duration_minutes, body.tier.as_deref(), state.unit())?;
    let tier = body
        .tier
        .clone()
        .unwrap_or_else(|| state.paygress.offer().tiers[0].id.clone());
    let pay_id = new_pay_id();
    let request = nut18::payment_request(
        &state.payments,
        amount,
        &format!(
            "a {}-minute Paygress lease ({tier} tier)",
            body.duration_minutes
        ),
        &pay_id,
        &state.pay_target(&headers, &pay_id),
    )?;
    let now = state.paygress.now();
    let secret = new_secret();
    state.store.insert(
        &secret,
        Data {
            tier,
            minutes: body.duration_minutes,
            username,
            order: Some(Pending {
                pay_id,
                request,
                amount,
                minutes: body.duration_minutes,
            }),
            top_up: None,
            access: None,
            expires_at: None,
            tokens: vec![],
            error: None,
            attempts: 0,
            created_at: now,
        },
        now,
    );
    debug!("web order created");
    Ok(private_json(StatusCode::CREATED, &OrderCreated { secret }))
}

/// `POST /web/api/lease`: the lease page's contents.
pub(crate) async fn lease_view(
    State(state): Shared,
    JsonBody(body): JsonBody<SecretBody>,
) -> Result<Response, ApiError> {
    let entry = state.entry(&body.secret)?;
    refresh_expiry(&state, &entry).await;
    let v = view(&entry.data(), state.paygress.now());
    Ok(private_json(StatusCode::OK, &v))
}

/// Takes the lease's expiry from the backend (a top-up from elsewhere moves it).
async fn refresh_expiry(state: &WebState, entry: &Entry) {
    let id = match &entry.data().access {
        Some(a) => a.pod_name.clone(),
        None => return,
    };
    if let Ok(Some(record)) = state.paygress.backend().get(&id).await {
        entry.data().expires_at = Some(record.expires_at);
    }
}

/// `POST /web/api/pay`: pays with a pasted token: the lease if it is not paid yet, else
/// a top-up.
pub(crate) async fn pay_with_token(
    State(state): Shared,
    JsonBody(body): JsonBody<PayBody>,
) -> Result<Response, ApiError> {
    let entry = state.entry(&body.secret)?;
    let token = CashuToken::new(body.token.trim());
    if !token.expose().starts_with("cashuA") && !token.expose().starts_with("cashuB") {
        return Err(ApiError::new(
            ErrorCode::InvalidToken,
            "paste a Cashu token: it starts with cashuA or cashuB",
        ));
    }
    let kind = if entry.data().access.is_some() {
        PayKind::TopUp
    } else {
        PayKind::Spawn
    };
    let result = pay(&state, entry.clone(), kind, token).await;
    let v = view(&entry.data(), state.paygress.now());
    match result {
        Ok(()) => Ok(private_json(StatusCode::OK, &v)),
        Err(e) => Err(e),
    }
}

/// `POST /web/api/top-up`: a payment request for `duration_minutes` more.
pub(crate) async fn top_up(
    State(state): Shared,
    headers: HeaderMap,
    JsonBody(body): JsonBody<TopUpBody>,
) -> Result<Response, ApiError> {
    let entry = state.entry(&body.secret)?;
    let pod_name = match &entry.data().access {
        Some(a) => a.pod_name.to_string(),
        None => {
            return Err(ApiError::with_status(
                StatusCode::CONFLICT,
                ErrorCode::InvalidRequest,
                "pay for the lease first",
            ));
        }
    };
    let (seconds, amount) = state
        .paygress
        .top_up_price(&pod_name, body.duration_minutes, state.unit())
        .await?;
    let pay_id = new_pay_id();
    let minutes = seconds.div_ceil(60);
    let request = nut18::payment_request(
        &state.payments,
        amount,
        &format!("{minutes} more minutes of Paygress lease {pod_name}"),
        &pay_id,
        &state.pay_target(&headers, &pay_id),
    )?;
    let old = entry.data().top_up.replace(Pending {
        pay_id: pay_id.clone(),
        request,
        amount,
        minutes,
    });
    if let Some(old) = old {
        state.store.remove_pay_id(&old.pay_id);
    }
    state.store.add_pay_id(&entry, &pay_id, PayKind::TopUp);
    let v = view(&entry.data(), state.paygress.now());
    Ok(private_json(StatusCode::OK, &v))
}

/// `POST /web/pay/{id}`: the HTTP transport of the page's NUT-18 payment requests.
pub(crate) async fn pay_nut18(
    State(state): Shared,
    Path(pay_id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (payload_id, token) = nut18::payload_token(&body)?;
    if payload_id.as_deref().is_some_and(|id| id != pay_id) {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "the payload's id is not this payment request's",
        ));
    }
    let Some((entry, kind)) = state.store.by_pay_id(&pay_id) else {
        return Err(ApiError::with_status(
            StatusCode::NOT_FOUND,
            ErrorCode::InvalidRequest,
            "no open payment request has this id; nothing was redeemed",
        ));
    };
    pay(&state, entry, kind, token).await?;
    Ok(private_json(
        StatusCode::OK,
        &serde_json::json!({"paid": true}),
    ))
}

// ---------------------------------------------------------------- paying

/// Runs one payment for `entry` in its own task (a dropped connection cannot cancel it).
async fn pay(
    state: &Arc<WebState>,
    entry: Arc<Entry>,
    kind: PayKind,
    token: CashuToken,
) -> Result<(), ApiError> {
    let state = state.clone();
    tokio::spawn(async move { pay_now(&state, &entry, kind, token).await })
        .await
        .unwrap_or_else(|e| {
            warn!(error = %e, "web payment task failed");
            Err(ApiError::new(
                ErrorCode::Internal,
                "the payment task failed",
            ))
        })
}

async fn pay_now(
    state: &WebState,
    entry: &Entry,
    kind: PayKind,
    token: CashuToken,
) -> Result<(), ApiError> {
    let _one_at_a_time = entry.paying.lock().await;
    let (key, request) = {
        let mut d = entry.data();
        let request = match (kind, &d.access) {
            (PayKind::Spawn, None) => Request::Spawn(SpawnRequest {
                cashu_token: token,
                ssh_username: d.username.clone(),
                pod_image: None,
                duration_minutes: Some(d.minutes),
                tier: Some(d.tier.clone()),
                ssh_public_key: None,
                password_login: None,
            }),
            (PayKind::Spawn, Some(_)) => {
                return Err(ApiError::with_status(
                    StatusCode::CONFLICT,
                    ErrorCode::InvalidRequest,
                    "this lease is already paid; nothing was redeemed",
                ));
            }
            (PayKind::TopUp, Some(a)) => Request::TopUp(TopUpRequest {
                pod_name: a.pod_name.to_string(),
                cashu_token: token,
            }),
            (PayKind::TopUp, None) => {
                return Err(ApiError::with_status(
                    StatusCode::CONFLICT,
                    ErrorCode::InvalidRequest,
                    "pay for the lease first; nothing was redeemed",
                ));
            }
        };
        d.attempts += 1;
        let what = match kind {
            PayKind::Spawn => "spawn",
            PayKind::TopUp => "top-up",
        };
        let key = RequestKey::new("web", &format!("{what}-{}-{}", entry.digest, d.attempts));
        (key, request)
    };
    let requester = Requester::new("web", &format!("lease-{}", entry.digest));
    let reply = state.paygress.handle(&key, &requester, request).await;
    let mut d = entry.data();
    match reply {
        Reply::AccessDetails(mut a) => {
            if let Some(change) = a.change_token.take() {
                d.tokens.push(SavedToken {
                    kind: "change",
                    token: change,
                });
            }
            if let Some(order) = d.order.take() {
                state.store.remove_pay_id(&order.pay_id);
            }
            d.expires_at = Some(a.expires_at);
            d.error = None;
            d.access = Some(a);
            Ok(())
        }
        Reply::TopUp(t) => {
            if let Some(change) = t.change_token {
                d.tokens.push(SavedToken {
                    kind: "change",
                    token: change,
                });
            }
            if let Some(pending) = d.top_up.take() {
                state.store.remove_pay_id(&pending.pay_id);
            }
            d.expires_at = Some(t.expires_at);
            d.error = None;
            Ok(())
        }
        Reply::Error(e) => {
            if let Some(refund) = e.refund_token.clone() {
                d.tokens.push(SavedToken {
                    kind: "refund",
                    token: refund,
                });
            }
            d.error = Some((e.code, e.message.clone()));
            // The page shows the refund; the wallet's POST gets it too.
            Err(ApiError::from_reply(e))
        }
        Reply::Status(_) | Reply::Released(_) => {
            Err(ApiError::new(ErrorCode::Internal, "unexpected reply"))
        }
    }
}
