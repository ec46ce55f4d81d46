//! Startup checks and the sweep of objects whose lease Job is gone.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use paygress_core::{BackendError, LeaseId};
use tracing::info;

use super::K8sBackend;
use crate::config::ServiceType;
use crate::error::{K8sError, map_kube_for};
use crate::objects;

/// Deletes the sweep sends at once.
const DELETE_CONCURRENCY: usize = 16;

/// Objects per page when the sweep lists (kubectl's default `--chunk-size`).
pub(super) const LIST_PAGE: u32 = 500;

/// Beyond the readiness timeout, how old a Secret or Service without an ownerReference
/// and without a Job must be before the sweep deletes it (clocks may differ between
/// the API server and this process).
pub(super) const UNOWNED_GRACE: Duration = Duration::from_secs(30);

impl K8sBackend {
    /// Refuses a configuration under which buyers could not reach their pods: without
    /// `SSH_HOST` and with NodePort Services, the nodes must be readable and at least one
    /// must have an ExternalIP or InternalIP. Call it once at startup: the addresses
    /// read are remembered for the first creates (see `create`).
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
        let mut reachable = false;
        for node in &nodes.items {
            if let (Some(name), Some(address)) =
                (node.metadata.name.as_deref(), objects::node_address(node))
            {
                // The first creates on each node need not read it again.
                self.inflight.remember_node(name, &address);
                reachable = true;
            }
        }
        if reachable {
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
    ///
    /// A Secret or Service without an ownerReference is one a create made before its
    /// Job's uid was known (see the `create` module): while its lease's Job exists it is
    /// adopted (given the ownerReference the create would have set, had it not died
    /// first); with no such Job it is deleted, unless this process is creating that
    /// lease now or it is younger than the readiness timeout plus [`UNOWNED_GRACE`]
    /// (another replica's create may be under way; the sweep looks again at its next
    /// call).
    pub(super) async fn sweep_orphans(&self) -> Result<usize, BackendError> {
        let lp = ListParams::default().labels(objects::SELECTOR);
        let list_error = |e| map_kube_for(None, e);
        let page = self.list_page;
        let (pods, services, secrets) = futures::try_join!(
            async { list_paged(&self.pods, &lp, page).await.map_err(list_error) },
            async {
                list_paged(&self.services, &lp, page)
                    .await
                    .map_err(list_error)
            },
            async {
                list_paged(&self.secrets, &lp, page)
                    .await
                    .map_err(list_error)
            },
        )?;
        let jobs = list_paged(&self.jobs, &lp, page)
            .await
            .map_err(list_error)?;
        let live: HashSet<String> = jobs.iter().filter_map(|j| j.uid.clone()).collect();
        // Lease name → uid of its Job, for the Jobs not being deleted.
        let by_name: HashMap<String, String> = jobs
            .iter()
            .filter(|j| j.deletion_timestamp.is_none())
            .filter_map(|j| Some((j.name.clone()?, j.uid.clone()?)))
            .collect();
        let young_before = self.clock.now()
            - jiff::SignedDuration::try_from(self.config.ready_timeout + UNOWNED_GRACE)
                .unwrap_or(jiff::SignedDuration::MAX);
        let mut look_again = false;
        let mut verdict = |meta: &ObjectMeta, adoptable: bool| -> Verdict {
            if meta.deletion_timestamp.is_some() {
                return Verdict::Keep;
            }
            let mut owners = meta
                .owner_references
                .iter()
                .flatten()
                .filter(|r| r.kind == "Job")
                .peekable();
            if owners.peek().is_some() {
                return if owners.any(|r| live.contains(&r.uid)) {
                    Verdict::Keep
                } else {
                    Verdict::Delete
                };
            }
            if !adoptable {
                return Verdict::Delete;
            }
            let lease = meta
                .labels
                .as_ref()
                .and_then(|l| l.get(objects::LEASE_LABEL))
                .cloned()
                .unwrap_or_default();
            // This process's own create sets the ownerReference (or removes what it
            // made, if it fails): nothing to adopt, and no reason to list everything
            // again at the next pass (under a steady stream of creates, that would be
            // at every pass).
            if self.inflight.is_ours_in_progress(&lease) {
                return Verdict::Keep;
            }
            if let Some(uid) = by_name.get(&lease) {
                return Verdict::Adopt(lease, uid.clone());
            }
            let young = meta
                .creation_timestamp
                .as_ref()
                .is_none_or(|t| t.0 > young_before);
            if young {
                look_again = true;
                Verdict::Keep
            } else {
                Verdict::Delete
            }
        };
        let dp = DeleteParams::background();
        let mut deletes: Vec<BoxFuture<'_, Result<usize, BackendError>>> = Vec::new();
        for meta in pods {
            if let (Verdict::Delete, Some(name)) = (verdict(&meta, false), meta.name) {
                let dp = &dp;
                deletes.push(Box::pin(async move {
                    deleted(self.pods.delete(&name, dp).await, "pod", &name)
                }));
            }
        }
        deletes.extend(dependents(
            &self.services,
            "service",
            services,
            &mut verdict,
            &dp,
        ));
        deletes.extend(dependents(
            &self.secrets,
            "secret",
            secrets,
            &mut verdict,
            &dp,
        ));
        if look_again {
            self.cache.sweep_again();
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

/// What the sweep does with one object.
enum Verdict {
    Keep,
    Delete,
    /// Give it an ownerReference to Job (lease name, uid).
    Adopt(String, String),
}

/// What the sweep sends for the Services (or Secrets) it listed, by their verdicts:
/// deletes and adoptions, none yet started.
fn dependents<'a, K>(
    api: &'a Api<K>,
    kind: &'static str,
    items: Vec<ObjectMeta>,
    verdict: &mut impl FnMut(&ObjectMeta, bool) -> Verdict,
    dp: &'a DeleteParams,
) -> Vec<BoxFuture<'a, Result<usize, BackendError>>>
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync,
{
    let mut sent: Vec<BoxFuture<'a, Result<usize, BackendError>>> = Vec::new();
    for meta in items {
        let Some(name) = meta.name.clone() else {
            continue;
        };
        match verdict(&meta, true) {
            Verdict::Keep => {}
            Verdict::Delete => sent.push(Box::pin(async move {
                deleted(api.delete(&name, dp).await, kind, &name)
            })),
            Verdict::Adopt(lease, uid) => {
                sent.push(Box::pin(
                    async move { adopted(api, &name, &lease, &uid).await },
                ))
            }
        }
    }
    sent
}

/// Sets the ownerReference a create did not get to set; 0 (nothing removed).
async fn adopted<K>(api: &Api<K>, name: &str, lease: &str, uid: &str) -> Result<usize, BackendError>
where
    K: Clone + std::fmt::Debug + serde::de::DeserializeOwned,
{
    let id: LeaseId = lease
        .parse()
        .map_err(|e: paygress_core::NameError| BackendError::Other(e.to_string().into()))?;
    let patch = objects::owner_patch(&id, uid);
    match api
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => {
            info!(name, lease, "gave an object its lease Job as owner");
            Ok(0)
        }
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(0),
        Err(err) => Err(map_kube_for(None, err)),
    }
}

/// Every object `lp` selects, read as metadata [`LIST_PAGE`]-sized pages at a time
/// (`page`), each object's metadata cut to what the sweep reads (names, uids, owners,
/// times, the lease label) as its page arrives: with many leases, neither the answers
/// nor what is kept of them grow with the whole list at once. Pages of one list are
/// one snapshot (the API server's continue token); an expired token is an error, and
/// the sweep runs again at its next call.
async fn list_paged<K>(
    api: &Api<K>,
    lp: &ListParams,
    page: u32,
) -> Result<Vec<ObjectMeta>, kube::Error>
where
    K: Clone + std::fmt::Debug + serde::de::DeserializeOwned,
{
    let mut lp = lp.clone().limit(page.max(1));
    let mut all = Vec::new();
    loop {
        let list = api.list_metadata(&lp).await?;
        all.extend(list.items.into_iter().map(|o| slim(o.metadata)));
        match list.metadata.continue_.filter(|t| !t.is_empty()) {
            Some(token) => lp = lp.continue_token(&token),
            None => return Ok(all),
        }
    }
}

/// What the sweep reads of an object's metadata (not its annotations, managed fields or
/// other labels).
fn slim(meta: ObjectMeta) -> ObjectMeta {
    ObjectMeta {
        name: meta.name,
        uid: meta.uid,
        owner_references: meta.owner_references,
        deletion_timestamp: meta.deletion_timestamp,
        creation_timestamp: meta.creation_timestamp,
        labels: meta.labels.map(|mut labels| {
            labels.retain(|k, _| k == objects::LEASE_LABEL);
            labels
        }),
        ..ObjectMeta::default()
    }
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
