#![doc = include_str!("../README.md")]

pub mod contract;
pub mod failpoint;
pub mod lease;
pub mod memory;
pub mod money;
pub mod names;
pub mod observe;
pub mod ports;
pub mod pricing;
pub mod protocol;
pub mod secret;
pub mod service;

pub use lease::{
    LeaseEvent, LeasePhase, LeaseRecord, LeaseSpec, LeaseState, Provisioned, Requester,
};
pub use money::{Amount, MintUrl, Unit};
pub use names::{LeaseId, NameError, Username};
pub use ports::{
    BackendError, Clock, DynClock, DynJournal, DynNotifier, DynPaymentVerifier, DynPodBackend,
    DynTransport, Entry, Extension, Incoming, Journal, JournalError, Notifier, PaymentError,
    PaymentVerifier, PodBackend, Purpose, RedeemAttempt, Redeemed, RequestKey, Responder, Stage,
    SystemClock, TokenCheck, TokenInfo, Transport, TransportError,
};
pub use pricing::{DurationLimits, PricingError, Purchase, Rate, Tier};
pub use protocol::{
    AccessDetails, ErrorCode, ErrorReply, ExpiryNotice, HostKey, LeaseStatus, Offer,
    ReleaseRequest, ReleaseResult, Reply, Request, SpawnRequest, StatusRequest, TierOffer,
    TopUpRequest, TopUpResult,
};
pub use secret::{CashuToken, Password};
pub use service::{
    DEFAULT_DATA_DIR, DEFAULT_EXPIRY_NOTICE, DEFAULT_IMAGE, DEFAULT_RELEASE_MINIMUM, Paygress,
    PaygressBuilder, QuoteError, ServiceConfig, TokenQuote,
};
