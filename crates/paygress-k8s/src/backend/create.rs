//! The create flow: the Job, its dependents, readiness from a watch, the paid clock.
//!
//! Round trips one after another, each the fewest the cluster allows:
//! 1. the Job (running at once) and a watch of the lease's pods, together;
//! 2. the Secret and the Service, together: their ownerReferences carry the Job's uid,
//!    known from the Job's create answer; the pod cannot start before its Secret
//!    exists (the kubelet does not start a container whose environment reads a missing
//!    Secret), and the watch, open since step 1, sees it Ready whenever that is;
//! 3. the patch that starts the paid clock (it must follow readiness), with the node
//!    lookup beside it.

use futures::StreamExt;
use futures::future::Either;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{PatchParams, PostParams, WatchEvent, WatchParams};
use kube::core::Status;
use kube::{Api, Resource};
use paygress_core::{BackendError, LeaseId, LeaseSpec, Provisioned};
use tokio::time::Instant;
use tracing::debug;

use super::{K8sBackend, ceil_to_second, dependent_error, floor_to_second};
use crate::config::ServiceType;
use crate::error::{K8sError, map_kube};
use crate::objects;

/// A watch's events, as `Api::watch` gives them.
type Events<K> = futures::stream::BoxStream<'static, kube::Result<WatchEvent<K>>>;

impl K8sBackend {
    /// The whole create (see [`PodBackend::create`](paygress_core::PodBackend::create)).
    pub(super) async fn create_lease(&self, spec: &LeaseSpec) -> Result<Provisioned, BackendError> {
        let id = &spec.id;
        let deadline = Instant::now() + self.config.ready_timeout;
        // The controller sets the Job's status.startTime at or after this moment (whole
        // seconds): its deadline counted from here never ends before the paid expiry.
        let started_at = floor_to_second(self.clock.now());
        let pp = PostParams::default();
        let job = objects::job(&self.config, spec);
        let create = self.jobs.create(&pp, &job);
        let watch = self.watch_pods(id);
        futures::pin_mut!(create, watch);
        // The Job's answer decides first: when it failed, nothing was created (or the
        // lease is someone else's) and nothing is rolled back.
        let (job, pods) = match futures::future::select(create, watch).await {
            Either::Left((job, watch)) => (job.map_err(|e| map_kube(id, e))?, watch.await),
            Either::Right((pods, create)) => (create.await.map_err(|e| map_kube(id, e))?, pods),
        };
        let result = match (job.meta().uid.clone(), pods) {
            (Some(uid), Ok(pods)) => self.start(spec, &uid, pods, started_at, deadline).await,
            (Some(_), Err(err)) => Err(err),
            (None, _) => Err(BackendError::Other("the created Job has no uid".into())),
        };
        if result.is_err() {
            self.roll_back(id).await;
        }
        result
    }

    /// Everything after the Job exists: dependents and readiness together, then the
    /// paid clock.
    async fn start(
        &self,
        spec: &LeaseSpec,
        job_uid: &str,
        pods: Events<Pod>,
        started_at: Timestamp,
        deadline: Instant,
    ) -> Result<Provisioned, BackendError> {
        let id = &spec.id;
        let not_ready = || {
            BackendError::Unavailable(Box::new(K8sError::NotReady {
                seconds: self.config.ready_timeout.as_secs(),
            }))
        };
        let ready = async {
            tokio::time::timeout_at(deadline, self.wait_ready(id, pods))
                .await
                .map_err(|_| not_ready())?
        };
        let (service, pod) = futures::try_join!(self.create_dependents(spec, job_uid), ready)?;
        let known_host = match (&self.config.ssh_host, self.config.service_type) {
            (Some(host), _) => Some(host.clone()),
            (None, ServiceType::NodePort) => None,
            (None, ServiceType::LoadBalancer) => Some(
                tokio::time::timeout_at(deadline, self.wait_load_balancer(id, &service))
                    .await
                    .map_err(|_| not_ready())??,
            ),
        };
        // The paid time starts now: the same length as paid, from the moment SSH works.
        let ready_at = ceil_to_second(self.clock.now()).max(spec.created_at);
        let paid = objects::deadline_seconds(spec.created_at, spec.expires_at);
        let expires_at = ready_at + jiff::SignedDuration::from_secs(paid);
        let job_deadline = objects::deadline_seconds(started_at, expires_at);
        let patch = objects::started_patch(ready_at, expires_at, job_deadline);
        let started = async {
            self.jobs
                .patch(
                    id.as_str(),
                    &PatchParams::default(),
                    &kube::api::Patch::Merge(&patch),
                )
                .await
                .map_err(|e| map_kube(id, e))
        };
        let host = async {
            match known_host {
                Some(host) => Ok(host),
                None => self.node_host(id, &pod).await,
            }
        };
        let (job, host) = futures::try_join!(started, host)?;
        self.cache.wrote_job(&job);
        self.cache.wrote_service(&service);
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

    /// The Secret and the Service, in one round trip; the Service as created.
    async fn create_dependents(
        &self,
        spec: &LeaseSpec,
        job_uid: &str,
    ) -> Result<Service, BackendError> {
        let id = &spec.id;
        let pp = PostParams::default();
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
        Ok(service)
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
