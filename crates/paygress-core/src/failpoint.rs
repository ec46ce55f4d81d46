//! Named crash points for fault-injection runs (`cargo xtask chaos`).
//!
//! The service calls [`hit`] at the instants where a crash is most costly (between
//! journaling and redeeming, between the swap and its record, after a pod is created,
//! while extending, while paying out). In normal builds no hook is installed and [`hit`]
//! does nothing. The `paygress` binary built with its `failpoints` feature installs a
//! hook that aborts the process at the points named in `PAYGRESS_FAILPOINTS`.

use std::sync::OnceLock;

/// Points the service passes, in the order of a request.
pub const POINTS: &[&str] = &[
    "after-journal-before-swap",
    "after-swap-before-journal",
    "after-create-before-reply",
    "during-extend",
    "after-release-journal-before-delete",
    "after-release-pin-before-delete",
    "after-release-delete-before-issue",
    "during-refund",
    "after-issue-before-journal",
];

static HOOK: OnceLock<fn(&'static str)> = OnceLock::new();

/// Installs the process-wide hook; `false` if one was installed already.
pub fn install(hook: fn(&'static str)) -> bool {
    HOOK.set(hook).is_ok()
}

/// Passes the point `name`: calls the hook if one is installed.
#[inline]
pub fn hit(name: &'static str) {
    if let Some(hook) = HOOK.get() {
        hook(name);
    }
}
