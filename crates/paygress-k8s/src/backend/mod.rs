//! [`K8sBackend`]: the [`PodBackend`] on a Kubernetes cluster.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Node, Pod, Secret, Service};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};

use kube::{Api, Client};
use paygress_core::{
    BackendError, DynClock, Extension, LeaseId, LeaseRecord, LeaseSpec, PodBackend, Provisioned,
    SystemClock,
};
use serde_json::json;
use tracing::{debug, instrument, warn};

use crate::config::K8sConfig;
use crate::error::{K8sError, map_kube, map_kube_for};
use crate::objects::{self, annotations};

mod cache;
mod create;
mod inflight;
mod sweep;

use cache::LeaseCache;
use inflight::Inflight;

/// How often `extend` tries when its patch loses a race (HTTP 409).
pub const EXTEND_ATTEMPTS: u32 = 3;

/// Requests the API client sends at once, at most: kube's client speaks HTTP/1.1 (one
/// request per connection) and keeps every connection its busiest moment opened, idle,
/// for 90 s. Unbounded, 64 creates at once (4 requests each, the settle writes behind
/// them) opened about 350 connections: 25 MiB of buffers in this process, and as many
/// of the API server's max-requests-inflight (400 by default). A watch holds its place
/// only until its response starts.
pub const MAX_IN_FLIGHT: usize = 64;

/// A kube client for `config` that sends at most [`MAX_IN_FLIGHT`] requests at once
/// (the others wait their turn in order). Makes no request.
///
/// # Errors
/// When kube cannot build a client for the configuration (TLS, auth).
pub fn client(config: kube::Config) -> Result<Client, kube::Error> {
    Ok(kube::client::ClientBuilder::try_from(config)?
        .with_layer(&tower::limit::ConcurrencyLimitLayer::new(MAX_IN_FLIGHT))
        .build())
}

/// Leases as Kubernetes Jobs (see the crate docs).
#[derive(Clone)]
pub struct K8sBackend {
    config: K8sConfig,
    jobs: Api<Job>,
    services: Api<Service>,
    secrets: Api<Secret>,
    pods: Api<Pod>,
    nodes: Api<Node>,
    clock: DynClock,
    /// The watched view of lease Jobs and Services that `list` reads once synced.
    cache: Arc<LeaseCache>,
    /// Creates under way, writes they left to finish, node addresses.
    inflight: Arc<Inflight>,
    /// Objects per page when the sweep lists.
    list_page: u32,
}

impl std::fmt::Debug for K8sBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("K8sBackend")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl K8sBackend {
    /// A backend using `client` in `config.namespace`. Makes no request.
    pub fn new(client: Client, config: K8sConfig) -> Self {
        let ns = config.namespace.as_str();
        Self {
            jobs: Api::namespaced(client.clone(), ns),
            services: Api::namespaced(client.clone(), ns),
            secrets: Api::namespaced(client.clone(), ns),
            pods: Api::namespaced(client.clone(), ns),
            nodes: Api::all(client),
            clock: Arc::new(SystemClock),
            cache: Arc::new(LeaseCache::default()),
            inflight: Arc::new(Inflight::default()),
            list_page: sweep::LIST_PAGE,
            config,
        }
    }

    /// The same backend reading `page` objects per request when its sweep lists
    /// (default 500, kubectl's `--chunk-size`): smaller pages, smaller answers held at
    /// once, more requests.
    pub fn with_list_page(mut self, page: u32) -> Self {
        self.list_page = page.max(1);
        self
    }

    /// The same backend reading time from `clock` (when a pod became ready).
    pub fn with_clock(mut self, clock: DynClock) -> Self {
        self.clock = clock;
        self
    }

    /// A backend with the in-cluster service account, or the local kubeconfig (what
    /// `kube::Client::try_default` reads), through [`client`]. Makes no request.
    pub async fn try_default(config: K8sConfig) -> Result<Self, K8sError> {
        let kube_config = kube::Config::infer()
            .await
            .map_err(|e| K8sError::Client(kube::Error::InferConfig(e)))?;
        let client = client(kube_config).map_err(K8sError::Client)?;
        Ok(Self::new(client, config))
    }

    /// Whether the watches of lease Jobs and Services (started by the first `list` or
    /// `sweep`) have synced and not failed since: `list` then reads the backend's own
    /// view instead of the API.
    pub fn watch_synced(&self) -> bool {
        self.cache.synced()
    }

    /// The same backend without the watched view: `list` and `sweep` always read the
    /// API (every lease Job and Service, and the sweep's lists, at every call).
    pub fn without_watch(mut self) -> Self {
        self.cache = Arc::new(LeaseCache::disabled());
        self
    }

    /// Starts the watches behind `list` now rather than at the first `list` (inside a
    /// tokio runtime; elsewhere, does nothing).
    pub fn start_watch(&self) {
        self.cache.start(&self.jobs, &self.services);
    }

    /// Waits until the writes a create of lease `id` left to finish after its reply
    /// (the ownerReferences of its Secret and Service, the patch starting its paid
    /// clock) have landed or been given up; at once when there are none.
    pub async fn settled(&self, id: &LeaseId) {
        self.inflight.settled(id).await;
    }

    /// The configuration in use.
    pub fn config(&self) -> &K8sConfig {
        &self.config
    }

    async fn try_extend(&self, id: &LeaseId, extension: &Extension) -> Result<(), BackendError> {
        let job = self
            .jobs
            .get(id.as_str())
            .await
            .map_err(|e| map_kube(id, e))?;
        if job.metadata.deletion_timestamp.is_some() {
            return Err(BackendError::NotFound(id.clone()));
        }
        if objects::is_finished(&job) {
            return Err(BackendError::Rejected(format!(
                "lease {id} has already ended"
            )));
        }
        let anchor = objects::deadline_anchor(&job)
            .ok_or_else(|| BackendError::Other("the Job has no creation time".into()))?;
        if extension.expires_at <= anchor {
            return Err(BackendError::Rejected(format!(
                "new expiry {} is before the Job started",
                extension.expires_at
            )));
        }
        let deadline = objects::deadline_seconds(anchor, extension.expires_at);
        let patch = json!({
            "metadata": {
                "resourceVersion": job.metadata.resource_version,
                "annotations": {
                    annotations::EXPIRES_AT: extension.expires_at.to_string(),
                    annotations::PAID_MSAT: extension.paid_msat.to_string(),
                },
            },
            "spec": { "activeDeadlineSeconds": deadline },
        });
        let job = self
            .jobs
            .patch(id.as_str(), &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| map_kube(id, e))?;
        self.cache.wrote_job(&job);
        Ok(())
    }
}

fn floor_to_second(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second()).unwrap_or(t)
}

fn ceil_to_second(t: Timestamp) -> Timestamp {
    if t.subsec_nanosecond() > 0 {
        Timestamp::from_second(t.as_second() + 1).unwrap_or(t)
    } else {
        t
    }
}

/// A Secret or Service that already exists belongs to no live lease of ours: a conflict,
/// not "lease already exists".
fn dependent_error(id: &LeaseId, err: kube::Error) -> BackendError {
    match map_kube(id, err) {
        BackendError::AlreadyExists(id) => {
            BackendError::Conflict(format!("an object of lease {id} already exists"))
        }
        other => other,
    }
}

#[async_trait]
impl PodBackend for K8sBackend {
    fn name(&self) -> &'static str {
        "kubernetes"
    }

    /// Creates the lease and returns once its pod is ready to log in: the Job, its
    /// Secret and its Service, with a watch of its pods, in one round trip; then the
    /// watch waits for the pod to be Ready (and, without `SSH_HOST`, the node's address
    /// is read, once per node). The paid time counts from that moment. The Secret's and
    /// Service's ownerReferences to the Job, and the Job's deadline and annotations
    /// ending it exactly at the paid expiry, are written after the reply, in a task of
    /// its own (see the `create` module). Not ready within the readiness timeout, or
    /// any failure on the way: what this call created is deleted (Job, Secret, Service)
    /// and the error returned, so core refunds the payment.
    #[instrument(skip_all, fields(lease = %spec.id))]
    async fn create(&self, spec: &LeaseSpec) -> Result<Provisioned, BackendError> {
        self.create_lease(spec).await
    }

    /// Raises the Job's `activeDeadlineSeconds` so that it ends at the new expiry, counted
    /// from the Job's `status.startTime` (the creation time before the Job has started),
    /// and records expiry and total paid in its annotations. The patch carries the Job's
    /// `resourceVersion`; when a concurrent change (e.g. a Job status update) wins, the
    /// Job is read again and the patch retried, [`EXTEND_ATTEMPTS`] times in all, then
    /// `Conflict` is returned.
    ///
    /// Waits first for the writes a create of this lease left to finish (see
    /// [`create`](Self::create)): the top-up applies to the started lease.
    #[instrument(skip_all, fields(lease = %id))]
    async fn extend(&self, id: &LeaseId, extension: &Extension) -> Result<(), BackendError> {
        self.inflight.settled(id).await;
        let mut attempt = 1;
        loop {
            match self.try_extend(id, extension).await {
                Err(BackendError::Conflict(msg)) if attempt < EXTEND_ATTEMPTS => {
                    debug!(attempt, reason = %msg, "top-up patch lost a race; retrying");
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// Deletes the Job with `propagationPolicy: Background` (the API's default for Jobs
    /// is to orphan their pods); the garbage collector removes pod, Service and Secret.
    /// Waits first for the writes a create of this lease left to finish.
    #[instrument(skip_all, fields(lease = %id))]
    async fn delete(&self, id: &LeaseId) -> Result<(), BackendError> {
        self.inflight.settled(id).await;
        let deleting = self.cache.deleting_job(id.as_str());
        let result = self
            .jobs
            .delete(id.as_str(), &DeleteParams::background())
            .await;
        let outcome = match result {
            Ok(_) => {
                self.cache.deleted_job(id.as_str());
                Ok(())
            }
            Err(kube::Error::Api(status)) if status.code == 404 => {
                self.cache.deleted_job(id.as_str());
                Ok(())
            }
            Err(err) => Err(map_kube(id, err)),
        };
        // After `deleted_job`: a report of the deletion arriving in between is ours.
        self.cache.done_deleting(deleting);
        outcome
    }

    /// The lease from its Job and Service, read from the API. While the started patch a
    /// create of this lease left to finish is on its way, the lease is shown as that
    /// patch makes it (running, until the expiry the reply said); `extend` and `delete`
    /// wait for it.
    #[instrument(skip_all, fields(lease = %id))]
    async fn get(&self, id: &LeaseId) -> Result<Option<LeaseRecord>, BackendError> {
        // The Job and its Service in one round trip.
        let (job, service) = futures::try_join!(
            async {
                self.jobs
                    .get_opt(id.as_str())
                    .await
                    .map_err(|e| map_kube(id, e))
            },
            async {
                self.services
                    .get_opt(&objects::service_name(id))
                    .await
                    .map_err(|e| map_kube(id, e))
            },
        )?;
        let Some(job) = job else {
            return Ok(None);
        };
        if job.metadata.deletion_timestamp.is_some() || !is_ours(&job) {
            return Ok(None);
        }
        let mut record = objects::record(&job, service.as_ref())?;
        self.inflight.overlay(std::slice::from_mut(&mut record));
        Ok(Some(record))
    }

    /// Every lease Job (by label), with node ports from the lease Services. Jobs whose
    /// annotations do not parse are skipped with a warning. Read from the backend's
    /// watched view once its watches have synced (started here at the first call);
    /// before that, and while a watch is broken, listed from the API. The view may lag
    /// the API by the watch's delay for changes made elsewhere (this backend's own
    /// writes are in it at once): the reaper re-reads each due lease with `get`. A lease
    /// whose started patch is still on its way (see [`create`](Self::create)) is listed
    /// as that patch makes it.
    #[instrument(skip_all)]
    async fn list(&self) -> Result<Vec<LeaseRecord>, BackendError> {
        self.start_watch();
        let mut records = match self.cache.list() {
            Some(records) => records,
            None => self.list_from_api().await?,
        };
        self.inflight.overlay(&mut records);
        Ok(records)
    }

    /// Removes pods, Services and Secrets whose lease Job no longer exists. Lists only
    /// when orphans may exist: at the first call, after a lease Job went away by another
    /// hand than this backend's, or while the Job watch is not synced.
    #[instrument(skip_all)]
    /// Waits for the writes creates left after their replies (ownerReferences, the
    /// patches starting paid clocks): stopped before they land, a lease would read as
    /// still starting until its Job's provisioning deadline.
    async fn shutdown(&self) {
        self.inflight.all_settled().await;
    }

    async fn sweep(&self) -> Result<usize, BackendError> {
        self.start_watch();
        if !self.cache.take_sweep_due() {
            return Ok(0);
        }
        let result = self.sweep_orphans().await;
        if result.is_err() {
            self.cache.sweep_again();
        }
        result
    }
}

impl K8sBackend {
    /// `list` from the API: every lease Job and Service.
    async fn list_from_api(&self) -> Result<Vec<LeaseRecord>, BackendError> {
        let lp = ListParams::default().labels(objects::SELECTOR);
        let list_error = |e| map_kube_for(None, e);
        let (jobs, services) = futures::try_join!(
            async { self.jobs.list(&lp).await.map_err(list_error) },
            async { self.services.list(&lp).await.map_err(list_error) },
        )?;
        let services: HashMap<String, Service> = services
            .items
            .into_iter()
            .filter_map(|s| Some((s.metadata.name.clone()?, s)))
            .collect();
        let mut records = Vec::with_capacity(jobs.items.len());
        for job in jobs.items {
            if job.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let name = job.metadata.name.clone().unwrap_or_default();
            let service = services.get(&format!("{name}-ssh"));
            match objects::record(&job, service) {
                Ok(record) => records.push(record),
                Err(err) => warn!(job = %name, error = %err, "skipping a Job that is not a lease"),
            }
        }
        records.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(records)
    }
}

fn is_ours(job: &Job) -> bool {
    job.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(objects::MANAGED_BY_LABEL))
        .is_some_and(|v| v == objects::MANAGED_BY)
}
