//! The operator's terms ([`ServiceConfig`]) and their defaults.

use std::time::Duration;

use crate::pricing::{DurationLimits, Rate, Tier};

/// The operator's terms. Start from [`ServiceConfig::default`] and set what differs
/// (the fields, or the `with_…` methods): new terms may be added.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServiceConfig {
    /// Name shown in the offer.
    pub name: String,
    /// Base price.
    pub rate: Rate,
    /// Tiers; the first is the default. Empty means one [`Tier::standard`].
    pub tiers: Vec<Tier>,
    /// Lease length bounds.
    pub limits: DurationLimits,
    /// Image used when a request names none (`SSH_BASE_IMAGE`).
    pub default_image: String,
    /// Other images buyers may ask for (`ALLOWED_POD_IMAGES`).
    pub allowed_images: Vec<String>,
    /// Host buyers connect to (`SSH_HOST`).
    pub ssh_host: String,
    /// Requests processed at once per transport; more wait (back-pressure).
    pub max_concurrent_requests: usize,
    /// Most live leases at once (`MAX_LEASES`); `None` for no limit beyond the
    /// backend's own capacity. Checked before a token is redeemed.
    pub max_leases: Option<usize>,
    /// How long finished requests are remembered, so that a duplicate gets the first
    /// reply (`JOURNAL_RETENTION_HOURS`). After it, a duplicate is refused as a spent
    /// token: it is never charged twice.
    pub journal_retention: Duration,
    /// The least lease time a release charges, counted from the lease's start
    /// (`RELEASE_MIN_CHARGE_MINUTES`): a lease released sooner refunds only the time
    /// after it. Covers the cost of starting a pod.
    pub release_minimum: Duration,
    /// How long before a lease's expiry its owner is sent a notice with how to top it up
    /// (`EXPIRY_NOTICE_MINUTES`); `None`: no notices.
    pub expiry_notice: Option<Duration>,
    /// How long a lease's data is kept after its paid end (`GRACE_MINUTES`): the pod is
    /// stopped at expiry, a top-up within this time brings it back (counted from the
    /// top-up), and only after it is the lease removed. Zero: removed at expiry. The
    /// backend must keep stopped leases as long (the local backend's `grace`).
    pub grace: Duration,
}

/// How long before expiry the owner is told when not told (`EXPIRY_NOTICE_MINUTES`):
/// ten minutes.
pub const DEFAULT_EXPIRY_NOTICE: Duration = Duration::from_secs(10 * 60);

/// The least lease time a release charges when not told (`RELEASE_MIN_CHARGE_MINUTES`):
/// five minutes.
pub const DEFAULT_RELEASE_MINIMUM: Duration = Duration::from_secs(5 * 60);

/// The image a lease runs when its request names none (`SSH_BASE_IMAGE`): the one
/// place this default is written.
pub const DEFAULT_IMAGE: &str = "linuxserver/openssh-server:latest";

/// Where the service keeps its state when not told (`PAYGRESS_DATA_DIR`): the one place
/// this default is written.
pub const DEFAULT_DATA_DIR: &str = "./paygress-data";

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            name: "paygress".to_owned(),
            rate: Rate::default(),
            tiers: vec![Tier::standard()],
            limits: DurationLimits::default(),
            default_image: DEFAULT_IMAGE.to_owned(),
            allowed_images: vec![],
            ssh_host: "localhost".to_owned(),
            max_concurrent_requests: 64,
            max_leases: None,
            journal_retention: Duration::from_secs(7 * 24 * 3600),
            release_minimum: DEFAULT_RELEASE_MINIMUM,
            expiry_notice: Some(DEFAULT_EXPIRY_NOTICE),
            grace: Duration::ZERO,
        }
    }
}

impl ServiceConfig {
    /// Sets the name shown in the offer.
    #[must_use]
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Sets the base price.
    #[must_use]
    pub fn with_rate(mut self, rate: Rate) -> Self {
        self.rate = rate;
        self
    }

    /// Sets the tiers (the first is the default).
    #[must_use]
    pub fn with_tiers(mut self, tiers: Vec<Tier>) -> Self {
        self.tiers = tiers;
        self
    }

    /// Sets the lease length bounds.
    #[must_use]
    pub fn with_limits(mut self, limits: DurationLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Sets the image used when a request names none.
    #[must_use]
    pub fn with_default_image(mut self, default_image: impl Into<String>) -> Self {
        self.default_image = default_image.into();
        self
    }

    /// Sets the other images buyers may ask for.
    #[must_use]
    pub fn with_allowed_images(mut self, allowed_images: Vec<String>) -> Self {
        self.allowed_images = allowed_images;
        self
    }

    /// Sets the host buyers connect to.
    #[must_use]
    pub fn with_ssh_host(mut self, ssh_host: impl Into<String>) -> Self {
        self.ssh_host = ssh_host.into();
        self
    }

    /// Sets the requests processed at once per transport.
    #[must_use]
    pub fn with_max_concurrent_requests(mut self, max_concurrent_requests: usize) -> Self {
        self.max_concurrent_requests = max_concurrent_requests;
        self
    }

    /// Sets the most live leases at once.
    #[must_use]
    pub fn with_max_leases(mut self, max_leases: Option<usize>) -> Self {
        self.max_leases = max_leases;
        self
    }

    /// Sets how long finished requests are remembered.
    #[must_use]
    pub fn with_journal_retention(mut self, journal_retention: Duration) -> Self {
        self.journal_retention = journal_retention;
        self
    }

    /// Sets the least lease time a release charges.
    #[must_use]
    pub fn with_release_minimum(mut self, release_minimum: Duration) -> Self {
        self.release_minimum = release_minimum;
        self
    }

    /// Sets how long before expiry its owner is told (`None`: never).
    #[must_use]
    pub fn with_expiry_notice(mut self, expiry_notice: Option<Duration>) -> Self {
        self.expiry_notice = expiry_notice;
        self
    }

    /// Sets how long a lease's data is kept after its paid end.
    #[must_use]
    pub fn with_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }
}
