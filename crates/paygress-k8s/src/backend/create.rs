//! The create flow: the Job and its dependents, readiness from a watch, the paid clock.
//!
//! One round trip on the way to the reply, then readiness:
//! 1. the Job (running at once), its Secret and its Service, and a watch of the
//!    lease's pods, all together. The Secret and Service are created without an
//!    ownerReference (the Job's uid is not known yet); the pod cannot start before its
//!    Secret exists (the kubelet does not start a container whose environment reads a
//!    missing Secret), and the watch sees it Ready whenever that is;
//! 2. the reply, as soon as the pod is Ready (and, without `SSH_HOST`, the address of
//!    its node is known: looked up once per node, then remembered; see
//!    [`NODE_ADDRESS_TTL`](super::inflight::NODE_ADDRESS_TTL)).
//!
//! Two writes follow, off the critical path, in a task of their own: the
//! ownerReferences of Secret and Service to the Job (sent as soon as the Job's uid is
//! known), and the patch that starts the paid clock (its ready time and expiry are
//! fixed before the reply, and are what the reply says). Until they have landed, this
//! backend's `extend` and `delete` of the lease wait for them, and `get` and `list` show
//! the lease as the started patch will make it (running, until the expiry the reply
//! said): a top-up can never be overwritten by the late patch.
//! A retry of that patch is conditional (the Job's resourceVersion, after checking it
//! still waits for it), so it never undoes another replica's top-up. Should the process
//! die before the patch lands, the Job keeps its provisioning values: its pod runs until
//! its deadline of paid time plus readiness timeout (at or after the expiry the buyer
//! was told: the operator's loss, bounded), and the lease reads as still starting.
//! Should it die before the ownerReferences land, the sweep adopts the Secret and
//! Service to their Job, or deletes them once no Job of theirs exists.

use std::time::Duration;

use futures::StreamExt;
use futures::future::Either;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{
    DeleteParams, Patch, PatchParams, PostParams, Preconditions, WatchEvent, WatchParams,
};
use kube::core::Status;
use kube::{Api, Resource};
use paygress_core::{BackendError, LeaseId, LeaseSpec, Provisioned};
use tokio::time::Instant;
use tracing::{debug, warn};

use super::{K8sBackend, ceil_to_second, dependent_error, floor_to_second};
use crate::config::ServiceType;
use crate::error::{K8sError, map_kube};
use crate::objects;

/// A watch's events, as `Api::watch` gives them.
type Events<K> = futures::stream::BoxStream<'static, kube::Result<WatchEvent<K>>>;

/// How often a write left to finish after the create is tried.
pub(super) const SETTLE_ATTEMPTS: u32 = 5;

/// The pause before the second try of such a write (doubled at each further try).
const SETTLE_PAUSE: Duration = Duration::from_millis(200);

/// The paid clock, as fixed when the pod became ready.
#[derive(Debug, Clone, Copy)]
struct Started {
    ready_at: Timestamp,
    expires_at: Timestamp,
    /// The Job's `activeDeadlineSeconds` ending it at `expires_at`.
    deadline: i64,
}

impl K8sBackend {
    /// The whole create (see [`PodBackend::create`](paygress_core::PodBackend::create)).
    pub(super) async fn create_lease(&self, spec: &LeaseSpec) -> Result<Provisioned, BackendError> {
        let id = &spec.id;
        let _creating = self.inflight.creating(id);
        let deadline = Instant::now() + self.config.ready_timeout;
        // The controller sets the Job's status.startTime at or after this moment (whole
        // seconds): its deadline counted from here never ends before the paid expiry.
        let started_at = floor_to_second(self.clock.now());
        let pp = PostParams::default();
        let creates = async {
            futures::join!(
                async {
                    self.jobs
                        .create(&pp, &objects::job(&self.config, spec))
                        .await
                        .map_err(|e| map_kube(id, e))
                },
                async {
                    self.secrets
                        .create(&pp, &objects::secret(&self.config, spec))
                        .await
                        .map_err(|e| dependent_error(id, e))
                },
                async {
                    self.services
                        .create(&pp, &objects::service(&self.config, spec))
                        .await
                        .map_err(|e| dependent_error(id, e))
                },
            )
        };
        let watch = self.watch_pods(id);
        futures::pin_mut!(creates, watch);
        // The watch is waited for only when every create succeeded.
        let ((job, secret, service), pods) = match futures::future::select(creates, watch).await {
            Either::Left((created, watch)) => {
                let all = created.0.is_ok() && created.1.is_ok() && created.2.is_ok();
                let pods = if all { watch.await } else { Err(not_waited()) };
                (created, pods)
            }
            Either::Right((pods, creates)) => (creates.await, pods),
        };
        let created = Created {
            job: job.as_ref().ok().and_then(|j| j.metadata.uid.clone()),
            secret: secret.as_ref().ok().and_then(|s| s.metadata.uid.clone()),
            service: service.as_ref().ok().and_then(|s| s.metadata.uid.clone()),
        };
        // The Job's answer decides first: when it failed, the lease is not ours (or not
        // there), and only what this call created is removed.
        let job = match job {
            Ok(job) => job,
            Err(err) => {
                self.roll_back(id, &created).await;
                return Err(err);
            }
        };
        let result = match (created.job.clone(), secret, service, pods) {
            (None, ..) => Err(BackendError::Other("the created Job has no uid".into())),
            (Some(_), Err(err), _, _) | (Some(_), _, Err(err), _) | (Some(_), _, _, Err(err)) => {
                Err(err)
            }
            (Some(job_uid), Ok(_), Ok(service), Ok(pods)) => {
                let owners = self.spawn_owner_patches(id, &job_uid);
                match self.start(spec, &service, pods, started_at, deadline).await {
                    Ok((provisioned, started)) => {
                        self.cache.wrote_job(&job);
                        self.cache.wrote_service(&service);
                        let backend = self.clone();
                        let lease = id.clone();
                        self.inflight.settle(id, started.expires_at, async move {
                            let _ = futures::join!(owners, backend.patch_started(&lease, started));
                        });
                        Ok(provisioned)
                    }
                    Err(err) => Err(err),
                }
            }
        };
        if result.is_err() {
            self.roll_back(id, &created).await;
        }
        result
    }

    /// Readiness (and the address buyers reach the pod at), then the paid clock: what
    /// the reply says, and what the started patch will write.
    async fn start(
        &self,
        spec: &LeaseSpec,
        service: &Service,
        pods: Events<Pod>,
        started_at: Timestamp,
        deadline: Instant,
    ) -> Result<(Provisioned, Started), BackendError> {
        let id = &spec.id;
        let not_ready = || {
            BackendError::Unavailable(Box::new(K8sError::NotReady {
                seconds: self.config.ready_timeout.as_secs(),
            }))
        };
        let pod = tokio::time::timeout_at(deadline, self.wait_ready(id, pods))
            .await
            .map_err(|_| not_ready())??;
        let host = match (&self.config.ssh_host, self.config.service_type) {
            (Some(host), _) => host.clone(),
            (None, ServiceType::NodePort) => self.node_host(id, &pod).await?,
            (None, ServiceType::LoadBalancer) => {
                tokio::time::timeout_at(deadline, self.wait_load_balancer(id, service))
                    .await
                    .map_err(|_| not_ready())??
            }
        };
        // The paid time starts now: the same length as paid, from the moment SSH works.
        let ready_at = ceil_to_second(self.clock.now()).max(spec.created_at);
        let paid = objects::deadline_seconds(spec.created_at, spec.expires_at);
        let expires_at = ready_at + jiff::SignedDuration::from_secs(paid);
        let started = Started {
            ready_at,
            expires_at,
            deadline: objects::deadline_seconds(started_at, expires_at),
        };
        debug!(%ready_at, %expires_at, "lease pod ready");
        let node_port = match self.config.service_type {
            ServiceType::NodePort => objects::node_port(service),
            ServiceType::LoadBalancer => None,
        };
        let provisioned = Provisioned {
            ssh_port: self.config.ssh_port,
            node_port,
            ssh_host: Some(host),
            instructions: Vec::new(),
            expires_at: Some(expires_at),
            host_keys: Vec::new(),
        };
        Ok((provisioned, started))
    }

    /// Makes the Job (uid `job_uid`) the owner of the lease's Secret and Service, in a
    /// task of its own. Each patch is tried [`SETTLE_ATTEMPTS`] times; one that never
    /// lands leaves the sweep to adopt the object.
    fn spawn_owner_patches(&self, id: &LeaseId, job_uid: &str) -> tokio::task::JoinHandle<()> {
        let backend = self.clone();
        let id = id.clone();
        let patch = objects::owner_patch(&id, job_uid);
        tokio::spawn(async move {
            let secret = objects::secret_name(&id);
            let service = objects::service_name(&id);
            let (a, b) = futures::join!(
                owner_patch(&backend.secrets, &secret, &patch),
                owner_patch(&backend.services, &service, &patch),
            );
            if !(a && b) {
                warn!(lease = %id, "could not make the Job the owner of its Secret and Service; the sweep will");
                backend.cache.sweep_again();
            }
        })
    }

    /// The patch that starts the paid clock. The first try is unconditional (the Job
    /// waits for it: no top-up is taken while it does); a retry first reads the Job,
    /// stops if the patch has landed already (a lost answer) or the Job is gone, and
    /// applies only to the version read.
    async fn patch_started(&self, id: &LeaseId, started: Started) {
        let pp = PatchParams::default();
        let patch = |rv: Option<&str>| {
            objects::started_patch(started.ready_at, started.expires_at, started.deadline, rv)
        };
        let mut pause = SETTLE_PAUSE;
        for attempt in 1..=SETTLE_ATTEMPTS {
            if attempt > 1 {
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
            let version = if attempt == 1 {
                None
            } else {
                match self.jobs.get_opt(id.as_str()).await {
                    Ok(Some(job)) if job.metadata.deletion_timestamp.is_none() => {
                        if !objects::is_starting(&job) {
                            self.cache.wrote_job(&job);
                            return;
                        }
                        job.metadata.resource_version.clone()
                    }
                    Ok(_) => return,
                    Err(err) => {
                        debug!(lease = %id, attempt, error = %err, "could not read the Job to start its paid clock");
                        continue;
                    }
                }
            };
            match self
                .jobs
                .patch(id.as_str(), &pp, &Patch::Merge(&patch(version.as_deref())))
                .await
            {
                Ok(job) => {
                    self.cache.wrote_job(&job);
                    return;
                }
                Err(kube::Error::Api(status)) if status.code == 404 => return,
                Err(err) => {
                    debug!(lease = %id, attempt, error = %err, "the patch starting the paid clock failed");
                }
            }
        }
        warn!(
            lease = %id,
            expires_at = %started.expires_at,
            "the patch starting the paid clock did not land: the lease reads as starting \
             and its Job ends at its provisioning deadline"
        );
    }

    /// A watch of the lease's pods, from their current state: without a resourceVersion
    /// the API server first sends every matching pod as `ADDED` (none yet, when opened
    /// with the Job's create), then every change. One call, no list before it.
    async fn watch_pods(&self, id: &LeaseId) -> Result<Events<Pod>, BackendError> {
        watch(&self.pods, &pod_watch(id), "0", id).await
    }

    /// The first Ready pod of the lease, from `pods`; a pod that failed to start ends
    /// the wait at once. A watch the server closes is opened again from the last
    /// version seen.
    async fn wait_ready(&self, id: &LeaseId, mut pods: Events<Pod>) -> Result<Pod, BackendError> {
        let mut version = "0".to_owned();
        loop {
            while let Some(event) = pods.next().await {
                match event.map_err(|e| map_kube(id, e))? {
                    WatchEvent::Added(pod) | WatchEvent::Modified(pod) => {
                        if objects::pod_ready(&pod) {
                            return Ok(pod);
                        }
                        if let Some(reason) = objects::pod_failed_to_start(&pod) {
                            return Err(BackendError::Rejected(format!(
                                "the lease's pod failed to start: {reason}"
                            )));
                        }
                        version = pod.meta().resource_version.clone().unwrap_or(version);
                    }
                    WatchEvent::Deleted(pod) => {
                        version = pod.meta().resource_version.clone().unwrap_or(version);
                    }
                    WatchEvent::Bookmark(b) => version = b.metadata.resource_version,
                    WatchEvent::Error(e) => {
                        version = restart_from(id, e)?;
                        break;
                    }
                }
            }
            pods = watch(&self.pods, &pod_watch(id), &version, id).await?;
        }
    }

    /// The address the lease's LoadBalancer Service was given: from its create answer,
    /// else from a watch of it since that answer's version.
    async fn wait_load_balancer(
        &self,
        id: &LeaseId,
        service: &Service,
    ) -> Result<String, BackendError> {
        if let Some(address) = objects::load_balancer_address(service) {
            return Ok(address);
        }
        let wp =
            WatchParams::default().fields(&format!("metadata.name={}", objects::service_name(id)));
        let mut version = service
            .meta()
            .resource_version
            .clone()
            .unwrap_or_else(|| "0".to_owned());
        loop {
            let mut events = watch(&self.services, &wp, &version, id).await?;
            while let Some(event) = events.next().await {
                match event.map_err(|e| map_kube(id, e))? {
                    WatchEvent::Added(s) | WatchEvent::Modified(s) => {
                        if let Some(address) = objects::load_balancer_address(&s) {
                            return Ok(address);
                        }
                        version = s.meta().resource_version.clone().unwrap_or(version);
                    }
                    WatchEvent::Deleted(_) => {
                        return Err(BackendError::Other("the Service was deleted".into()));
                    }
                    WatchEvent::Bookmark(b) => version = b.metadata.resource_version,
                    WatchEvent::Error(e) => {
                        version = restart_from(id, e)?;
                        break;
                    }
                }
            }
        }
    }

    /// The ExternalIP (else InternalIP) of the node running `pod`: remembered for
    /// [`NODE_ADDRESS_TTL`](super::inflight::NODE_ADDRESS_TTL), else read.
    async fn node_host(&self, id: &LeaseId, pod: &Pod) -> Result<String, BackendError> {
        let name = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .ok_or_else(|| BackendError::Other("the ready pod has no node".into()))?;
        if let Some(address) = self.inflight.node_address(&name) {
            return Ok(address);
        }
        let gate = self.inflight.node_read(&name);
        let _reading = gate.lock().await;
        // Another create may have read it while this one queued.
        if let Some(address) = self.inflight.node_address(&name) {
            return Ok(address);
        }
        let node = self.nodes.get(&name).await.map_err(|e| map_kube(id, e))?;
        let address = objects::node_address(&node).ok_or_else(|| {
            BackendError::Rejected(
                "the node running the pod has no ExternalIP or InternalIP; set SSH_HOST or \
                 SERVICE_TYPE=LoadBalancer"
                    .to_owned(),
            )
        })?;
        self.inflight.remember_node(&name, &address);
        Ok(address)
    }
}

/// Stands for the pod watch when a create failed before it was needed.
fn not_waited() -> BackendError {
    BackendError::Other("the pod watch was not waited for".into())
}

/// What one create call made (uids), so that a failed create removes exactly that.
#[derive(Debug, Default)]
struct Created {
    job: Option<String>,
    secret: Option<String>,
    service: Option<String>,
}

impl K8sBackend {
    /// Removes what a failed create made: the Job (and its pod), the Secret and the
    /// Service, each only if this call created it (its uid as the precondition). They
    /// are deleted one by one: their ownerReferences may not be set yet.
    async fn roll_back(&self, id: &LeaseId, created: &Created) {
        let dp = |uid: &str| {
            DeleteParams::background().preconditions(Preconditions {
                uid: Some(uid.to_owned()),
                resource_version: None,
            })
        };
        let gone = |r: kube::Result<_>, kind: &str| match r {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            // The Job's deadline still ends it and its TTL removes it; the sweep removes
            // a Secret or Service left without a Job.
            Err(err) => {
                warn!(lease = %id, kind, error = %err, "could not delete an object of a failed create")
            }
        };
        let job = async {
            if let Some(uid) = &created.job {
                gone(
                    self.jobs.delete(id.as_str(), &dp(uid)).await.map(|_| ()),
                    "job",
                );
            }
        };
        let secret = async {
            if let Some(uid) = &created.secret {
                let name = objects::secret_name(id);
                gone(
                    self.secrets.delete(&name, &dp(uid)).await.map(|_| ()),
                    "secret",
                );
            }
        };
        let service = async {
            if let Some(uid) = &created.service {
                let name = objects::service_name(id);
                gone(
                    self.services.delete(&name, &dp(uid)).await.map(|_| ()),
                    "service",
                );
            }
        };
        futures::join!(job, secret, service);
    }
}

/// Sets an object's ownerReferences by `patch`; whether it landed (or the object is
/// gone: nothing left to own).
async fn owner_patch<K>(api: &Api<K>, name: &str, patch: &serde_json::Value) -> bool
where
    K: Clone + std::fmt::Debug + serde::de::DeserializeOwned,
{
    let mut pause = SETTLE_PAUSE;
    for attempt in 1..=SETTLE_ATTEMPTS {
        if attempt > 1 {
            tokio::time::sleep(pause).await;
            pause *= 2;
        }
        match api
            .patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            Ok(_) => return true,
            Err(kube::Error::Api(s)) if s.code == 404 => return true,
            Err(err) => debug!(name, attempt, error = %err, "ownerReference patch failed"),
        }
    }
    false
}

/// The watch of one lease's pods (by its label).
fn pod_watch(id: &LeaseId) -> WatchParams {
    WatchParams::default().labels(&format!("{}={id}", objects::LEASE_LABEL))
}

async fn watch<K>(
    api: &Api<K>,
    wp: &WatchParams,
    version: &str,
    id: &LeaseId,
) -> Result<Events<K>, BackendError>
where
    K: Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
{
    let events = api.watch(wp, version).await.map_err(|e| map_kube(id, e))?;
    Ok(events.boxed())
}

/// A watch that ended with an error event: "410 Gone" (the version is too old) starts
/// again from the current state; anything else is the API server's error.
fn restart_from(id: &LeaseId, e: Box<Status>) -> Result<String, BackendError> {
    if e.code == 410 {
        Ok("0".to_owned())
    } else {
        Err(map_kube(id, kube::Error::Api(e)))
    }
}
