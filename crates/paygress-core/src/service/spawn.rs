//! New leases: check everything before the token is touched, redeem, provision, reply.

use tracing::{info, warn};

use super::{
    Ctx, Failure, Paygress, add_seconds, backend_failure, ceil_to_second, minutes_to_seconds,
    truncate, untouched,
};
use crate::lease::{LeaseEvent, LeaseSpec, LeaseState};
use crate::money::Amount;
use crate::names::{LeaseId, Username};
use crate::ports::{BackendError, Purpose, Redeemed};
use crate::pricing::{self, Rate, Tier};
use crate::protocol::{AccessDetails, ErrorCode, Reply, SpawnRequest};
use crate::secret::Password;

/// A spawn request whose every field checked out, before the token is touched.
pub(super) struct SpawnPlan {
    username: Username,
    image: String,
    tier: Tier,
    rate: Rate,
    requested_seconds: Option<u64>,
    ssh_public_key: Option<String>,
    password_login: bool,
}

impl Paygress {
    pub(super) async fn spawn(&self, ctx: Ctx<'_>, req: SpawnRequest) -> Reply {
        let plan = match self.plan_spawn(&req) {
            Ok(plan) => plan,
            Err(f) => return f.into_reply(),
        };
        let info = match self.inspect(&req.cashu_token) {
            Ok(info) => info,
            Err(f) => return f.into_reply(),
        };
        // What the token buys after the mint's fee, checked before redeeming: a token
        // too small is refused untouched (the quote is redone on the amount received).
        if let Err(e) = pricing::quote_spawn(
            plan.rate,
            self.config.limits,
            info.net(),
            plan.requested_seconds,
        ) {
            let mut failure = untouched(e);
            if !info.fee.is_zero() {
                failure.message.push_str(&format!(
                    " (the mint takes a fee of {} from the token)",
                    info.fee
                ));
            }
            return failure.into_reply();
        }
        if let Err(f) = self.check_capacity().await {
            return f.into_reply();
        }
        let lease = LeaseId::generate();
        let payment = match self
            .redeem(ctx, Purpose::Spawn, &lease, &req.cashu_token)
            .await
        {
            Ok(p) => p,
            Err(reply) => return reply,
        };
        let fee = (info.amount.unit == payment.amount.unit)
            .then(|| info.amount.value.saturating_sub(payment.amount.value))
            .filter(|f| *f > 0)
            .map(|f| Amount::new(f, info.amount.unit));
        self.provision(ctx, plan, lease, payment, fee).await
    }

    /// Continues a spawn whose payment is held (first try, or a retry after a lost
    /// answer or a crash): prices what was received and creates the lease.
    pub(super) async fn provision_request(
        &self,
        ctx: Ctx<'_>,
        req: &SpawnRequest,
        lease: LeaseId,
        payment: Redeemed,
    ) -> Reply {
        match self.plan_spawn(req) {
            Ok(plan) => self.provision(ctx, plan, lease, payment, None).await,
            Err(f) => self.refund(ctx, &payment, f).await,
        }
    }

    async fn provision(
        &self,
        ctx: Ctx<'_>,
        plan: SpawnPlan,
        lease: LeaseId,
        payment: Redeemed,
        mint_fee: Option<Amount>,
    ) -> Reply {
        let mut state = LeaseState::Requested.on(LeaseEvent::PaymentRedeemed);
        let purchase = match pricing::quote_spawn(
            plan.rate,
            self.config.limits,
            payment.amount,
            plan.requested_seconds,
        ) {
            Ok(p) => p,
            Err(e) => return self.refund(ctx, &payment, e.into()).await,
        };

        // Whole seconds, rounded up: the buyer never loses the fraction.
        let now = ceil_to_second(self.clock.now());
        let expires_at = add_seconds(now, purchase.seconds);
        let password = Password::generate();
        let spec = LeaseSpec {
            id: lease.clone(),
            owner: ctx.requester.clone(),
            username: plan.username.clone(),
            password: password.clone(),
            ssh_public_key: plan.ssh_public_key,
            password_login: plan.password_login,
            image: plan.image,
            tier: plan.tier.clone(),
            created_at: now,
            expires_at,
            paid_msat: purchase.charged.to_msat(),
            mint: payment.mint.clone(),
        };
        state = state.and_then(|s| s.on(LeaseEvent::ProvisioningStarted));
        let provisioned = match self.backend.create(&spec).await {
            Ok(p) => p,
            Err(e) => {
                warn!(lease = %lease, error = %e, "provisioning failed; refunding");
                if !matches!(e, BackendError::AlreadyExists(_)) {
                    // A half-created lease must not run unpaid.
                    if let Err(e) = self.backend.delete(&lease).await {
                        warn!(lease = %lease, error = %e, "cleanup after failed create failed");
                    }
                }
                return self
                    .refund(ctx, &payment, backend_failure(&e, "create the pod"))
                    .await;
            }
        };
        crate::failpoint::hit("after-create-before-reply");
        // The backend may have started the clock later (once the pod was reachable):
        // the paid time counts from then, never less than what was quoted.
        let expires_at = provisioned
            .expires_at
            .filter(|real| *real > expires_at)
            .unwrap_or(expires_at);
        state = state.and_then(|s| s.on(LeaseEvent::Provisioned));
        debug_assert_eq!(state, Ok(LeaseState::Active));
        info!(lease = %lease, seconds = purchase.seconds, charged = %purchase.charged, "lease active");

        let ssh_host = provisioned
            .ssh_host
            .clone()
            .unwrap_or_else(|| self.config.ssh_host.clone());
        let port = provisioned.node_port.unwrap_or(provisioned.ssh_port);
        let mut instructions = if plan.password_login {
            vec![
                format!(
                    "ssh -o PreferredAuthentications=password -o PubkeyAuthentication=no -p {port} {}@{ssh_host}",
                    plan.username
                ),
                "Password: the ssh_password field of this reply".to_owned(),
            ]
        } else {
            vec![
                format!("ssh -p {port} {}@{ssh_host}", plan.username),
                "Log in with your SSH key: password login is off for this lease".to_owned(),
            ]
        };
        for key in &provisioned.host_keys {
            instructions.push(format!("Host key: {}", key.fingerprint));
        }
        instructions.extend(provisioned.instructions);
        instructions.push(format!(
            "Paid until {expires_at}; extend with a top-up for pod_name {lease}"
        ));
        if let Some(fee) = mint_fee {
            instructions.push(format!(
                "The mint took {fee} from your token as its fee; the lease is priced on the rest"
            ));
        }
        let reply = Reply::AccessDetails(AccessDetails {
            pod_name: lease,
            ssh_username: plan.username.to_string(),
            ssh_password: password,
            ssh_host,
            ssh_port: provisioned.ssh_port,
            node_port: provisioned.node_port,
            expires_at,
            duration_seconds: purchase.seconds,
            tier: plan.tier.id,
            instructions,
            change_token: None,
            host_keys: provisioned.host_keys,
            password_login: plan.password_login,
        });
        self.finish(ctx, reply, &payment.mint, purchase.change)
            .await
    }

    /// Refuses (token untouched) when no lease can be added: `max_leases` live leases,
    /// or the backend out of room.
    async fn check_capacity(&self) -> Result<(), Failure> {
        const FULL: &str = "no capacity for a new lease right now; your token was not redeemed";
        if let Some(max) = self.config.max_leases {
            let now = self.clock.now();
            let live = self
                .backend
                .list()
                .await
                .map_err(|e| backend_failure(&e, "count the leases"))?
                .iter()
                // A lease in its grace period keeps its data and may come back.
                .filter(|r| {
                    matches!(
                        self.lease_state(r, now),
                        LeaseState::Active | LeaseState::Provisioning | LeaseState::Grace
                    )
                })
                .count();
            if live >= max {
                return Err(Failure::new(
                    ErrorCode::Unavailable,
                    format!("{FULL} ({live} of {max} leases in use)"),
                ));
            }
        }
        self.backend
            .check_capacity()
            .await
            .map_err(|e| Failure::new(ErrorCode::Unavailable, format!("{FULL}: {e}")))
    }

    fn plan_spawn(&self, req: &SpawnRequest) -> Result<SpawnPlan, Failure> {
        let username = match &req.ssh_username {
            Some(name) => name.parse::<Username>()?,
            None => Username::default(),
        };
        let image = match &req.pod_image {
            None => self.config.default_image.clone(),
            Some(img)
                if *img == self.config.default_image
                    || self.config.allowed_images.contains(img) =>
            {
                img.clone()
            }
            Some(img) => {
                return Err(Failure::new(
                    ErrorCode::ImageNotAllowed,
                    format!(
                        "image {:?} is not allowed; allowed: {}",
                        truncate(img),
                        self.offer().images.join(", ")
                    ),
                ));
            }
        };
        let tier = self.tier(req.tier.as_deref())?;
        let rate = self.rate_of(&tier);
        let requested_seconds = match req.duration_minutes {
            Some(m) => {
                let secs = minutes_to_seconds(m)?;
                pricing::check_requested(self.config.limits, secs)?;
                Some(secs)
            }
            None => None,
        };
        let ssh_public_key = match &req.ssh_public_key {
            Some(k) => Some(validate_public_key(k)?),
            None => None,
        };
        let password_login = match (&ssh_public_key, req.password_login) {
            (None, Some(false)) => {
                return Err(Failure::new(
                    ErrorCode::InvalidRequest,
                    "password_login false needs an ssh_public_key to log in with",
                ));
            }
            (None, _) => true,
            (Some(_), asked) => asked.unwrap_or(false),
        };
        Ok(SpawnPlan {
            password_login,
            username,
            image,
            tier,
            rate,
            requested_seconds,
            ssh_public_key,
        })
    }
}

/// Accepts one OpenSSH public key line: `<type> <base64> [comment]`.
fn validate_public_key(key: &str) -> Result<String, Failure> {
    const TYPES: &[&str] = &[
        "ssh-ed25519",
        "ssh-rsa",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "sk-ssh-ed25519@openssh.com",
        "sk-ecdsa-sha2-nistp256@openssh.com",
    ];
    let bad =
        |why: &str| Failure::new(ErrorCode::InvalidPublicKey, format!("ssh_public_key {why}"));
    let key = key.trim();
    if key.len() > 16 * 1024 || key.contains(['\n', '\r', '\0']) {
        return Err(bad("must be a single OpenSSH public key line"));
    }
    let mut parts = key.split_whitespace();
    let kind = parts.next().unwrap_or_default();
    let body = parts.next().unwrap_or_default();
    if !TYPES.contains(&kind) {
        return Err(bad("has an unsupported key type"));
    }
    if body.len() < 16
        || !body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=')
    {
        return Err(bad("has a malformed base64 body"));
    }
    Ok(key.to_owned())
}
