//! Startup checks and the sweep of objects whose lease Job is gone.

use std::collections::HashSet;

use futures::StreamExt;
use futures::future::BoxFuture;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, ListParams, PartialObjectMeta};
use paygress_core::BackendError;
use tracing::info;

use super::K8sBackend;
use crate::config::ServiceType;
use crate::error::{K8sError, map_kube_for};
use crate::objects;

/// Deletes the sweep sends at once.
const DELETE_CONCURRENCY: usize = 16;

impl K8sBackend {
    /// Refuses a configuration under which buyers could not reach their pods: without
    /// `SSH_HOST` and with NodePort Services, the nodes must be readable and at least one
    /// must have an ExternalIP or InternalIP. Call it once at startup.
    pub async fn check_reachability(&self) -> Result<(), K8sError> {
        if self.config.ssh_host.is_some() || self.config.service_type == ServiceType::LoadBalancer {
            return Ok(());
        }
        let nodes =
            self.nodes
                .list(&ListParams::default())
                .await
                .map_err(|e| K8sError::Unreachable {
                    reason: format!("cannot read the cluster's nodes ({e})"),
                })?;
        if nodes
            .items
            .iter()
            .any(|n| objects::node_address(n).is_some())
        {
            Ok(())
        } else {
            Err(K8sError::Unreachable {
                reason: "no node has an ExternalIP or InternalIP".to_owned(),
            })
        }
    }

    /// Deletes pods, Services and Secrets labelled as Paygress's whose owner Job no longer
    /// exists (a Job deleted with orphaning leaves them running, unpaid). Dependents are
    /// listed before Jobs, so the Job of any dependent seen is in the Job list.
    pub(super) async fn sweep_orphans(&self) -> Result<usize, BackendError> {
        let lp = ListParams::default().labels(objects::SELECTOR);
        let list_error = |e| map_kube_for(None, e);
        let (pods, services, secrets) = futures::try_join!(
            async { self.pods.list_metadata(&lp).await.map_err(list_error) },
            async { self.services.list_metadata(&lp).await.map_err(list_error) },
            async { self.secrets.list_metadata(&lp).await.map_err(list_error) },
        )?;
        let jobs = self.jobs.list_metadata(&lp).await.map_err(list_error)?;
        let live: HashSet<String> = jobs
            .items
            .iter()
            .filter_map(|j| j.metadata.uid.clone())
            .collect();
        let orphaned = |meta: &ObjectMeta| {
            meta.deletion_timestamp.is_none()
                && !meta
                    .owner_references
                    .iter()
                    .flatten()
                    .any(|r| r.kind == "Job" && live.contains(&r.uid))
        };
        let dp = DeleteParams::background();
        let names = |items: Vec<ObjectMeta>| -> Vec<String> {
            items
                .into_iter()
                .filter(|m| orphaned(m))
                .filter_map(|m| m.name)
                .collect()
        };
        let mut deletes: Vec<BoxFuture<'_, Result<usize, BackendError>>> = Vec::new();
        for name in names(metas(pods.items)) {
            let dp = &dp;
            deletes.push(Box::pin(async move {
                deleted(self.pods.delete(&name, dp).await, "pod", &name)
            }));
        }
        for name in names(metas(services.items)) {
            let dp = &dp;
            deletes.push(Box::pin(async move {
                deleted(self.services.delete(&name, dp).await, "service", &name)
            }));
        }
        for name in names(metas(secrets.items)) {
            let dp = &dp;
            deletes.push(Box::pin(async move {
                deleted(self.secrets.delete(&name, dp).await, "secret", &name)
            }));
        }
        // Every orphan is tried, [`DELETE_CONCURRENCY`] at a time; the first error is
        // returned.
        let results: Vec<_> = futures::stream::iter(deletes)
            .buffer_unordered(DELETE_CONCURRENCY)
            .collect()
            .await;
        let mut removed = 0;
        for result in results {
            removed += result?;
        }
        Ok(removed)
    }
}

fn metas<K>(items: Vec<PartialObjectMeta<K>>) -> Vec<ObjectMeta> {
    items.into_iter().map(|o| o.metadata).collect()
}

/// 1 when an orphan was deleted, 0 when it was already gone.
fn deleted<T>(
    result: Result<T, kube::Error>,
    kind: &str,
    name: &str,
) -> Result<usize, BackendError> {
    match result {
        Ok(_) => {
            info!(
                kind,
                name, "removed an object whose lease Job no longer exists"
            );
            Ok(1)
        }
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(0),
        Err(err) => Err(map_kube_for(None, err)),
    }
}
