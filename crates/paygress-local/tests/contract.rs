//! The backend contract, one test per check, against the local backend in both
//! sandbox modes (each check on a fresh backend with its own ports and directory).
#![allow(clippy::unwrap_used)]

mod common;

mod bubblewrap {
    use paygress_local::{LocalBackend, SandboxMode};

    async fn fresh(check: u16) -> (LocalBackend, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let b =
            super::common::backend(dir.path(), 26100 + check * 10, SandboxMode::Bubblewrap).await;
        (b, dir)
    }

    paygress_core::pod_backend_tests!(fresh);
}

mod unsandboxed {
    use paygress_local::{LocalBackend, SandboxMode};

    async fn fresh(check: u16) -> (LocalBackend, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let b =
            super::common::backend(dir.path(), 26200 + check * 10, SandboxMode::Unsandboxed).await;
        (b, dir)
    }

    paygress_core::pod_backend_tests!(fresh);
}
