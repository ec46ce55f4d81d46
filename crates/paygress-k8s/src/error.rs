//! The crate's error type and the mapping of Kubernetes API errors to core's
//! [`BackendError`].

use paygress_core::{BackendError, LeaseId};
use thiserror::Error;

/// Why building the Kubernetes backend failed.
#[derive(Debug, Error)]
pub enum K8sError {
    /// An environment variable holds a value that cannot be used.
    #[error("invalid {var}: {reason}")]
    Config {
        /// The variable's name.
        var: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// No Kubernetes client could be built (no in-cluster service account, no kubeconfig).
    #[error("kubernetes client: {0}")]
    Client(#[source] kube::Error),
    /// A lease's Job lacks an annotation or holds one that does not parse.
    #[error("job {job}: annotation {key}: {reason}")]
    Annotation {
        /// The Job's name.
        job: String,
        /// The annotation key.
        key: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// Buyers could not reach lease pods with this configuration.
    #[error(
        "buyers could not reach their pods: {reason}; set SSH_HOST to an address that reaches \
         the nodes' NodePorts, or SERVICE_TYPE=LoadBalancer"
    )]
    Unreachable {
        /// What is missing.
        reason: String,
    },
    /// The lease's pod did not become ready in time.
    #[error("the pod did not become ready within {seconds} s")]
    NotReady {
        /// The readiness timeout.
        seconds: u64,
    },
}

impl From<K8sError> for BackendError {
    fn from(err: K8sError) -> Self {
        BackendError::Other(Box::new(err))
    }
}

/// Maps an API error for an operation on lease `id` to core's error.
///
/// 404 → `NotFound`, 409 `AlreadyExists` → `AlreadyExists`, other 409 → `Conflict`,
/// 400/403/422 → `Rejected` (invalid field, quota, admission), 429/5xx and transport
/// failures → `Unavailable`, anything else → `Other`.
pub(crate) fn map_kube(id: &LeaseId, err: kube::Error) -> BackendError {
    map_kube_for(Some(id), err)
}

/// Like [`map_kube`] for a request about no single lease (a list): 404 means the
/// namespace is missing, which is `Other`.
pub(crate) fn map_kube_for(id: Option<&LeaseId>, err: kube::Error) -> BackendError {
    match err {
        kube::Error::Api(status) => {
            let code = status.code;
            let message = if status.message.is_empty() {
                format!("{} ({code})", status.reason)
            } else {
                status.message.clone()
            };
            match code {
                404 => match id {
                    Some(id) => BackendError::NotFound(id.clone()),
                    None => BackendError::Other(Box::new(kube::Error::Api(status))),
                },
                409 if status.reason == "AlreadyExists" => match id {
                    Some(id) => BackendError::AlreadyExists(id.clone()),
                    None => BackendError::Conflict(message),
                },
                409 => BackendError::Conflict(message),
                400 | 403 | 422 => BackendError::Rejected(message),
                429 | 500..=599 => BackendError::Unavailable(Box::new(kube::Error::Api(status))),
                _ => BackendError::Other(Box::new(kube::Error::Api(status))),
            }
        }
        err @ (kube::Error::HyperError(_) | kube::Error::Service(_)) => {
            BackendError::Unavailable(Box::new(err))
        }
        other => BackendError::Other(Box::new(other)),
    }
}

#[cfg(test)]
mod tests {
    use kube::core::Status;

    use super::*;

    fn api(code: u16, reason: &str) -> kube::Error {
        kube::Error::Api(Status::failure("msg", reason).with_code(code).boxed())
    }

    #[test]
    fn api_errors_map_to_core_errors() {
        let id: LeaseId = "ssh-pod-abcd1234".parse().unwrap();
        let m = |code, reason| map_kube(&id, api(code, reason));
        assert!(matches!(m(404, "NotFound"), BackendError::NotFound(got) if got == id));
        assert!(matches!(m(409, "AlreadyExists"), BackendError::AlreadyExists(got) if got == id));
        assert!(matches!(m(409, "Conflict"), BackendError::Conflict(_)));
        assert!(matches!(m(422, "Invalid"), BackendError::Rejected(_)));
        assert!(matches!(m(403, "Forbidden"), BackendError::Rejected(_)));
        assert!(matches!(
            m(429, "TooManyRequests"),
            BackendError::Unavailable(_)
        ));
        assert!(matches!(
            m(500, "InternalError"),
            BackendError::Unavailable(_)
        ));
        assert!(matches!(
            m(503, "ServiceUnavailable"),
            BackendError::Unavailable(_)
        ));
        assert!(matches!(m(418, "Teapot"), BackendError::Other(_)));
        assert!(matches!(
            map_kube_for(None, api(404, "NotFound")),
            BackendError::Other(_)
        ));
        let transport = kube::Error::Service("connection refused".into());
        assert!(matches!(
            map_kube(&id, transport),
            BackendError::Unavailable(_)
        ));
    }
}
