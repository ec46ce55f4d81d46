//! [`K8sBackend`]: the [`PodBackend`] on a Kubernetes cluster.

use std::collections::HashMap;

use async_trait::async_trait;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Secret, Service};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use paygress_core::{
    BackendError, Extension, LeaseId, LeaseRecord, LeaseSpec, PodBackend, Provisioned,
};
use serde_json::json;
use tracing::{debug, instrument, warn};

use crate::config::K8sConfig;
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
            secrets: Api::namespaced(client, ns),
            config,
        }
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

    async fn create_dependents(
        &self,
        spec: &LeaseSpec,
        job_uid: &str,
    ) -> Result<Service, BackendError> {
        let id = &spec.id;
        let pp = PostParams::default();
        let secret: Secret =
            objects::typed("Secret", objects::secret(&self.config, spec, job_uid))?;
        self.secrets
            .create(&pp, &secret)
            .await
            .map_err(|e| dependent_error(id, e))?;
        let service: Service =
            objects::typed("Service", objects::service(&self.config, spec, job_uid))?;
        self.services
            .create(&pp, &service)
            .await
            .map_err(|e| dependent_error(id, e))
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

    #[instrument(skip_all, fields(lease = %spec.id))]
    async fn create(&self, spec: &LeaseSpec) -> Result<Provisioned, BackendError> {
        let id = &spec.id;
        let job: Job = objects::typed("Job", objects::job(&self.config, spec))?;
        let job = self
            .jobs
            .create(&PostParams::default(), &job)
            .await
            .map_err(|e| map_kube(id, e))?;
        let Some(uid) = job.metadata.uid.clone() else {
            self.roll_back(id).await;
            return Err(BackendError::Other("the created Job has no uid".into()));
        };
        let service = match self.create_dependents(spec, &uid).await {
            Ok(service) => service,
            Err(err) => {
                self.roll_back(id).await;
                return Err(err);
            }
        };
        let ns = &self.config.namespace;
        let port = self.config.ssh_port;
        Ok(Provisioned {
            ssh_port: port,
            node_port: objects::node_port(&service),
            ssh_host: None,
            instructions: vec![format!(
                "kubectl -n {ns} port-forward svc/{} {port}:{port}",
                objects::service_name(id)
            )],
        })
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
}

fn is_ours(job: &Job) -> bool {
    job.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(objects::MANAGED_BY_LABEL))
        .is_some_and(|v| v == objects::MANAGED_BY)
}
