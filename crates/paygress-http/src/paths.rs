//! The API's paths, shared by the server's router and the [`crate::client`].

/// `GET`: service and transports up.
pub const HEALTHZ: &str = "/healthz";
/// `POST`: pays for a lease.
pub const SPAWN_POD: &str = "/spawn-pod";
/// `POST`: pays to extend a lease.
pub const TOP_UP_POD: &str = "/top-up-pod";
/// `GET`: every lease's public view.
pub const PODS: &str = "/pods";
/// `GET`: one lease's public view (axum's route syntax; see [`pod`] for a concrete path).
pub const POD: &str = "/pods/{name}";
/// `POST`: the owner ends a lease early and gets the unused time back (axum's route
/// syntax; see [`release`] for a concrete path).
pub const RELEASE_POD: &str = "/pods/{name}/release";
/// `GET` / `POST`: what a token is worth, checked without redeeming it.
pub const AUTH: &str = "/auth";
/// `GET`: what the service sells.
pub const OFFER: &str = "/offer";
/// `GET`: the OpenAPI document.
pub const OPENAPI: &str = "/openapi.json";

/// The path of one lease's view ([`POD`] with the name filled in).
pub fn pod(name: &str) -> String {
    format!("{PODS}/{name}")
}

/// The path releasing one lease ([`RELEASE_POD`] with the name filled in).
pub fn release(name: &str) -> String {
    format!("{PODS}/{name}/release")
}
