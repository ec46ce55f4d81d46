//! [`K8sBackend`]: the [`PodBackend`] on a Kubernetes cluster.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use futures::TryStreamExt;
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Node, Pod, Secret, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, watcher};
use kube::{Api, Client};
use paygress_core::{
    BackendError, DynClock, Extension, LeaseId, LeaseRecord, LeaseSpec, PodBackend, Provisioned,
    SystemClock,
};
use serde_json::json;
use tracing::{debug, info, instrument, warn};

use crate::config::{K8sConfig, ServiceType};
use crate::error::{K8sError, map_kube, map_kube_for};
use crate::objects::{self, annotations};

/// How often `extend` tries when its patch loses a race (HTTP 409).
pub const EXTEND_ATTEMPTS: u32 = 3;

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
            config,
        }
    }

    /// The same backend reading time from `clock` (when a pod became ready).
    pub fn with_clock(mut self, clock: DynClock) -> Self {
        self.clock = clock;
        self
    }

    /// A backend with the in-cluster service account, or the local kubeconfig
    /// (`kube::Client::try_default`). Makes no request.
    pub async fn try_default(config: K8sConfig) -> Result<Self, K8sError> {
        let client = Client::try_default().await.map_err(K8sError::Client)?;
        Ok(Self::new(client, config))
    }

    /// The configuration in use.
    pub fn config(&self) -> &K8sConfig {
        &self.config
    }

    /// Removes the Job of a lease whose creation failed half-way; its Secret and Service
    /// (if they were created) go with it through their ownerReferences.
    async fn roll_back(&self, id: &LeaseId) {
        if let Err(err) = self
            .jobs
            .delete(id.as_str(), &DeleteParams::background())
            .await
        {
            // The Job's deadline still ends it and its TTL removes it.
            warn!(lease = %id, error = %err, "could not delete the Job of a failed create");
        }
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
        self.jobs
            .patch(id.as_str(), &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| map_kube(id, e))?;
        Ok(())
    }

    /// Everything after the Job exists: dependents, resume, readiness, the paid clock.
    async fn start(&self, spec: &LeaseSpec, job_uid: &str) -> Result<Provisioned, BackendError> {
        let id = &spec.id;
        let pp = PostParams::default();
        // Independent objects in one round trip.
        let (_, service) = futures::try_join!(
            async {
                self.secrets
                    .create(&pp, &objects::secret(&self.config, spec, job_uid))
                    .await
                    .map_err(|e| dependent_error(id, e))
            },
            async {
                self.services
                    .create(&pp, &objects::service(&self.config, spec, job_uid))
                    .await
                    .map_err(|e| dependent_error(id, e))
            },
        )?;
        // The controller sets status.startTime at or after this moment (whole seconds).
        let resumed_at = floor_to_second(self.clock.now());
        self.jobs
            .patch(
                id.as_str(),
                &PatchParams::default(),
                &Patch::Merge(&objects::resume_patch()),
            )
            .await
            .map_err(|e| map_kube(id, e))?;
        let timeout = self.config.ready_timeout;
        let (pod, host) = tokio::time::timeout(timeout, self.wait_reachable(id, &service))
            .await
            .map_err(|_| {
                BackendError::Unavailable(Box::new(K8sError::NotReady {
                    seconds: timeout.as_secs(),
                }))
            })??;
        // The paid time starts now: the same length as paid, from the moment SSH works.
        let ready_at = ceil_to_second(self.clock.now()).max(spec.created_at);
        let paid = objects::deadline_seconds(spec.created_at, spec.expires_at);
        let expires_at = ready_at + jiff::SignedDuration::from_secs(paid);
        let deadline = objects::deadline_seconds(resumed_at, expires_at);
        let patch = objects::started_patch(ready_at, expires_at, deadline);
        let started = async {
            self.jobs
                .patch(id.as_str(), &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(|e| map_kube(id, e))
        };
        let host = async {
            match host {
                Some(host) => Ok(host),
                None => self.node_host(id, &pod).await,
            }
        };
        let (_, host) = futures::try_join!(started, host)?;
        debug!(%ready_at, %expires_at, "lease pod ready");
        let node_port = match self.config.service_type {
            ServiceType::NodePort => objects::node_port(&service),
            ServiceType::LoadBalancer => None,
        };
        Ok(Provisioned {
            ssh_port: self.config.ssh_port,
            node_port,
            ssh_host: Some(host),
            instructions: Vec::new(),
            expires_at: Some(expires_at),
            host_keys: Vec::new(),
        })
    }

    /// Watches the lease's pod until it is Ready; with a LoadBalancer Service, also
    /// until the load balancer has an address. Returns the pod and the host buyers use,
    /// when already known (`SSH_HOST`, or the load balancer's address).
    async fn wait_reachable(
        &self,
        id: &LeaseId,
        service: &Service,
    ) -> Result<(Pod, Option<String>), BackendError> {
        let pod = self.wait_ready(id);
        let host = async {
            if let Some(host) = &self.config.ssh_host {
                return Ok(Some(host.clone()));
            }
            match self.config.service_type {
                ServiceType::NodePort => Ok(None),
                ServiceType::LoadBalancer => self.wait_load_balancer(id, service).await.map(Some),
            }
        };
        futures::try_join!(pod, host)
    }

    /// The first Ready pod of the lease, from a watch (list, then watch from its
    /// resourceVersion: no event is missed and nothing is polled).
    async fn wait_ready(&self, id: &LeaseId) -> Result<Pod, BackendError> {
        let config = watcher::Config::default().labels(&format!("{}={id}", objects::LEASE_LABEL));
        let stream = watcher(self.pods.clone(), config).applied_objects();
        futures::pin_mut!(stream);
        while let Some(pod) = stream.try_next().await.map_err(|e| watch_error(id, e))? {
            if objects::pod_ready(&pod) {
                return Ok(pod);
            }
            if let Some(reason) = objects::pod_failed_to_start(&pod) {
                return Err(BackendError::Rejected(format!(
                    "the lease's pod failed to start: {reason}"
                )));
            }
        }
        Err(BackendError::Other("the pod watch ended".into()))
    }

    /// The address the lease's LoadBalancer Service was given, from a watch.
    async fn wait_load_balancer(
        &self,
        id: &LeaseId,
        service: &Service,
    ) -> Result<String, BackendError> {
        if let Some(address) = objects::load_balancer_address(service) {
            return Ok(address);
        }
        let config = watcher::Config::default()
            .fields(&format!("metadata.name={}", objects::service_name(id)));
        let stream = watcher(self.services.clone(), config).applied_objects();
        futures::pin_mut!(stream);
        while let Some(service) = stream.try_next().await.map_err(|e| watch_error(id, e))? {
            if let Some(address) = objects::load_balancer_address(&service) {
                return Ok(address);
            }
        }
        Err(BackendError::Other("the Service watch ended".into()))
    }

    /// The ExternalIP (else InternalIP) of the node running `pod`.
    async fn node_host(&self, id: &LeaseId, pod: &Pod) -> Result<String, BackendError> {
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .ok_or_else(|| BackendError::Other("the ready pod has no node".into()))?;
        let node = self.nodes.get(&node).await.map_err(|e| map_kube(id, e))?;
        objects::node_address(&node).ok_or_else(|| {
            BackendError::Rejected(
                "the node running the pod has no ExternalIP or InternalIP; set SSH_HOST or \
                 SERVICE_TYPE=LoadBalancer"
                    .to_owned(),
            )
        })
    }

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
    async fn sweep_orphans(&self) -> Result<usize, BackendError> {
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
        let mut removed = 0;
        let dp = DeleteParams::background();
        for pod in pods.items.iter().filter(|p| orphaned(&p.metadata)) {
            let name = pod.metadata.name.clone().unwrap_or_default();
            removed += deleted(self.pods.delete(&name, &dp).await, "pod", &name)?;
        }
        for svc in services.items.iter().filter(|s| orphaned(&s.metadata)) {
            let name = svc.metadata.name.clone().unwrap_or_default();
            removed += deleted(self.services.delete(&name, &dp).await, "service", &name)?;
        }
        for secret in secrets.items.iter().filter(|s| orphaned(&s.metadata)) {
            let name = secret.metadata.name.clone().unwrap_or_default();
            removed += deleted(self.secrets.delete(&name, &dp).await, "secret", &name)?;
        }
        Ok(removed)
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

fn watch_error(id: &LeaseId, err: watcher::Error) -> BackendError {
    match err {
        watcher::Error::InitialListFailed(e)
        | watcher::Error::WatchStartFailed(e)
        | watcher::Error::WatchFailed(e) => map_kube(id, e),
        other => BackendError::Unavailable(Box::new(other)),
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

    /// Creates the lease and returns once its pod is ready to log in: the Job suspended,
    /// then its Secret and Service together (they need the Job's uid), then the Job
    /// resumed (the controller starts its clock then), then a watch until the pod is
    /// Ready; the paid time counts from that moment, and the Job's deadline and
    /// annotations are set to end exactly then. Not ready within the readiness timeout,
    /// or any failure on the way: the Job is deleted (with everything it owns) and the
    /// error returned, so core refunds the payment.
    #[instrument(skip_all, fields(lease = %spec.id))]
    async fn create(&self, spec: &LeaseSpec) -> Result<Provisioned, BackendError> {
        let id = &spec.id;
        let job = self
            .jobs
            .create(&PostParams::default(), &objects::job(&self.config, spec))
            .await
            .map_err(|e| map_kube(id, e))?;
        let Some(uid) = job.metadata.uid.clone() else {
            self.roll_back(id).await;
            return Err(BackendError::Other("the created Job has no uid".into()));
        };
        match self.start(spec, &uid).await {
            Ok(provisioned) => Ok(provisioned),
            Err(err) => {
                self.roll_back(id).await;
                Err(err)
            }
        }
    }

    /// Raises the Job's `activeDeadlineSeconds` so that it ends at the new expiry, counted
    /// from the Job's `status.startTime` (the creation time before the Job has started),
    /// and records expiry and total paid in its annotations. The patch carries the Job's
    /// `resourceVersion`; when a concurrent change (e.g. a Job status update) wins, the
    /// Job is read again and the patch retried, [`EXTEND_ATTEMPTS`] times in all, then
    /// `Conflict` is returned.
    #[instrument(skip_all, fields(lease = %id))]
    async fn extend(&self, id: &LeaseId, extension: &Extension) -> Result<(), BackendError> {
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
    #[instrument(skip_all, fields(lease = %id))]
    async fn delete(&self, id: &LeaseId) -> Result<(), BackendError> {
        match self
            .jobs
            .delete(id.as_str(), &DeleteParams::background())
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(err) => Err(map_kube(id, err)),
        }
    }

    #[instrument(skip_all, fields(lease = %id))]
    async fn get(&self, id: &LeaseId) -> Result<Option<LeaseRecord>, BackendError> {
        let Some(job) = self
            .jobs
            .get_opt(id.as_str())
            .await
            .map_err(|e| map_kube(id, e))?
        else {
            return Ok(None);
        };
        if job.metadata.deletion_timestamp.is_some() || !is_ours(&job) {
            return Ok(None);
        }
        let service = self
            .services
            .get_opt(&objects::service_name(id))
            .await
            .map_err(|e| map_kube(id, e))?;
        Ok(Some(objects::record(&job, service.as_ref())?))
    }

    /// Every lease Job (by label), with node ports from the lease Services. Jobs whose
    /// annotations do not parse are skipped with a warning.
    #[instrument(skip_all)]
    async fn list(&self) -> Result<Vec<LeaseRecord>, BackendError> {
        let lp = ListParams::default().labels(objects::SELECTOR);
        let list_error = |e| map_kube_for(None, e);
        let jobs = self.jobs.list(&lp).await.map_err(list_error)?;
        let services = self.services.list(&lp).await.map_err(list_error)?;
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

    /// Removes pods, Services and Secrets whose lease Job no longer exists.
    #[instrument(skip_all)]
    async fn sweep(&self) -> Result<usize, BackendError> {
        self.sweep_orphans().await
    }
}

fn is_ours(job: &Job) -> bool {
    job.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(objects::MANAGED_BY_LABEL))
        .is_some_and(|v| v == objects::MANAGED_BY)
}
