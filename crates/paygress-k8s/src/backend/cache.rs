//! The backend's own view of the lease Jobs and their Services' node ports, fed by two
//! watches (label selector [`objects::SELECTOR`]): `list` reads it instead of listing
//! every Job and Service at each reaper pass.
//!
//! What is kept is small: per Job its uid and its parsed [`LeaseRecord`] (never the
//! Job), per Service its node port. The view serves `list` only while both watches are
//! synced (their initial list done and no error since); before that, and while a watch
//! is broken, `list` reads the API as it always did. Money decisions never read it:
//! `get` (what core reads under the lease's lock before a delete or a top-up) and
//! `extend` read the API.
//!
//! The backend's own writes go into the view at once (read your writes): a lease it
//! created is listed, one it deleted is not, before the watch has told. A deleted Job's
//! uid is remembered until the watch reports it gone, so that an older event still on
//! its way cannot bring it back.
//!
//! The view also tells the sweep when to look: orphans appear only when a Job goes away
//! by another hand than ours (`kubectl delete --cascade=orphan`, the TTL controller), so
//! while the Job watch is synced and has seen no such deletion, the sweep lists
//! nothing.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Service;
use kube::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use paygress_core::LeaseRecord;
use tracing::{debug, warn};

use crate::objects;

/// One lease Job as the view keeps it.
#[derive(Debug, Clone)]
struct CachedJob {
    uid: String,
    /// `None`: a Job with our label whose annotations do not parse (skipped by `list`).
    record: Option<LeaseRecord>,
}

/// The items of one watched resource, and whether they are complete.
#[derive(Debug)]
struct Store<V> {
    items: HashMap<String, V>,
    /// Filled during a (re)list, swapped in at its end.
    building: Option<HashMap<String, V>>,
    synced: bool,
}

impl<V> Default for Store<V> {
    fn default() -> Self {
        Self {
            items: HashMap::new(),
            building: None,
            synced: false,
        }
    }
}

#[derive(Debug, Default)]
struct View {
    jobs: Store<CachedJob>,
    /// Service name → node port.
    services: Store<Option<u16>>,
    /// uids of Jobs this backend deleted that the watch has not reported gone.
    deleted: HashSet<String>,
    /// uids of Jobs this backend is deleting now (its delete sent, the reply not yet
    /// read): the watch may report them gone first.
    deleting: HashSet<String>,
    /// Whether orphans may exist: a Job went away by another hand, or the Job watch
    /// (re)listed or broke, since the last sweep. Starts true (the first sweep looks).
    sweep_due: bool,
}

/// The view shared by the backend's clones and the watch tasks.
#[derive(Debug)]
pub(super) struct LeaseCache {
    view: Arc<Mutex<View>>,
    /// The watch tasks, once started (at the first `list` or `sweep`).
    tasks: Mutex<Option<Vec<tokio::task::AbortHandle>>>,
    /// `false`: never watches, keeps nothing.
    enabled: bool,
}

impl Default for LeaseCache {
    fn default() -> Self {
        Self {
            view: Arc::new(Mutex::new(View {
                sweep_due: true,
                ..View::default()
            })),
            tasks: Mutex::new(None),
            enabled: true,
        }
    }
}

impl LeaseCache {
    /// A view that never starts its watches: never synced, every sweep lists.
    pub(super) fn disabled() -> Self {
        Self {
            view: Arc::new(Mutex::new(View::default())),
            tasks: Mutex::new(Some(Vec::new())),
            enabled: false,
        }
    }
}

impl Drop for LeaseCache {
    fn drop(&mut self) {
        if let Some(tasks) = self.tasks.get_mut().ok().and_then(Option::take) {
            for task in tasks {
                task.abort();
            }
        }
    }
}

fn lock(view: &Mutex<View>) -> MutexGuard<'_, View> {
    view.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl LeaseCache {
    /// Starts the two watches, once; outside a tokio runtime, does nothing (the view
    /// then never syncs and everything reads the API).
    pub(super) fn start(&self, jobs: &Api<Job>, services: &Api<Service>) {
        let mut tasks = self
            .tasks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if tasks.is_some() || tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let config = watcher::Config::default().labels(objects::SELECTOR);
        let job_events = watcher::watcher(jobs.clone(), config.clone()).default_backoff();
        let service_events = watcher::watcher(services.clone(), config).default_backoff();
        let view = self.view.clone();
        let job_task = tokio::spawn(async move {
            futures::pin_mut!(job_events);
            while let Some(event) = job_events.next().await {
                on_job(&mut lock(&view), event);
            }
        });
        let view = self.view.clone();
        let service_task = tokio::spawn(async move {
            futures::pin_mut!(service_events);
            while let Some(event) = service_events.next().await {
                on_service(&mut lock(&view), event);
            }
        });
        *tasks = Some(vec![job_task.abort_handle(), service_task.abort_handle()]);
    }

    /// Whether both watches have synced and neither has failed since: `list` reads the
    /// view.
    pub(super) fn synced(&self) -> bool {
        let view = lock(&self.view);
        view.jobs.synced && view.services.synced
    }

    /// Every lease in the view, with node ports from the Services, in id order; `None`
    /// when the view is not synced.
    pub(super) fn list(&self) -> Option<Vec<LeaseRecord>> {
        let view = lock(&self.view);
        if !(view.jobs.synced && view.services.synced) {
            return None;
        }
        let mut records: Vec<LeaseRecord> = view
            .jobs
            .items
            .values()
            .filter_map(|job| job.record.clone())
            .map(|mut record| {
                record.node_port = view
                    .services
                    .items
                    .get(&objects::service_name(&record.id))
                    .copied()
                    .flatten();
                record
            })
            .collect();
        drop(view);
        records.sort_by(|a, b| a.id.cmp(&b.id));
        Some(records)
    }

    /// Whether the sweep must list: orphans may exist (see [`View::sweep_due`]), or the
    /// Job watch is not synced. Clears the mark: call it when the sweep is about to run.
    pub(super) fn take_sweep_due(&self) -> bool {
        let mut view = lock(&self.view);
        let due = view.sweep_due || !view.jobs.synced;
        view.sweep_due = false;
        due
    }

    /// Marks the sweep due again (the sweep that cleared it failed).
    pub(super) fn sweep_again(&self) {
        lock(&self.view).sweep_due = true;
    }

    /// A Job this backend wrote (created, patched), as the API answered.
    pub(super) fn wrote_job(&self, job: &Job) {
        if !self.enabled {
            return;
        }
        let mut view = lock(&self.view);
        apply_job(&mut view, job);
    }

    /// A Service this backend created, as the API answered.
    pub(super) fn wrote_service(&self, service: &Service) {
        if !self.enabled {
            return;
        }
        let mut view = lock(&self.view);
        if let Some(name) = service.metadata.name.clone() {
            view.services
                .items
                .insert(name, objects::node_port(service));
        }
    }

    /// This backend is about to delete Job `name`: until [`done_deleting`] with the uid
    /// returned, a deletion the watch reports of it is this backend's, not another
    /// hand's (the watch can report it before the delete's reply arrives).
    ///
    /// [`done_deleting`]: Self::done_deleting
    pub(super) fn deleting_job(&self, name: &str) -> Option<String> {
        if !self.enabled {
            return None;
        }
        let mut view = lock(&self.view);
        let uid = view.jobs.items.get(name)?.uid.clone();
        view.deleting.insert(uid.clone());
        Some(uid)
    }

    /// The delete [`deleting_job`](Self::deleting_job) announced has been answered
    /// (either way).
    pub(super) fn done_deleting(&self, uid: Option<String>) {
        if let Some(uid) = uid {
            lock(&self.view).deleting.remove(&uid);
        }
    }

    /// This backend deleted Job `name`.
    pub(super) fn deleted_job(&self, name: &str) {
        if !self.enabled {
            return;
        }
        let mut view = lock(&self.view);
        if let Some(job) = view.jobs.items.remove(name) {
            view.deleted.insert(job.uid);
        }
    }
}

fn cached(job: &Job) -> Option<(String, CachedJob)> {
    let name = job.metadata.name.clone()?;
    let uid = job.metadata.uid.clone().unwrap_or_default();
    if job.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let record = match objects::record(job, None) {
        Ok(record) => Some(record),
        Err(err) => {
            debug!(job = %name, error = %err, "a Job that is not a lease");
            None
        }
    };
    Some((name, CachedJob { uid, record }))
}

/// Applies a Job (added or modified) to the view, unless this backend deleted it.
fn apply_job(view: &mut View, job: &Job) {
    let name = job.metadata.name.clone().unwrap_or_default();
    let uid = job.metadata.uid.as_deref().unwrap_or_default();
    if view.deleted.contains(uid) {
        return;
    }
    match cached(job) {
        Some((name, entry)) => {
            view.jobs.items.insert(name, entry);
        }
        // Being deleted: gone for `list`.
        None => {
            view.jobs.items.remove(&name);
        }
    }
}

fn on_job(view: &mut View, event: Result<Event<Job>, watcher::Error>) {
    match event {
        Ok(Event::Apply(job)) => {
            apply_job(view, &job);
            view.jobs.synced = view.jobs.building.is_none();
        }
        Ok(Event::Delete(job)) => {
            let name = job.metadata.name.clone().unwrap_or_default();
            let uid = job.metadata.uid.clone().unwrap_or_default();
            if !view.deleted.remove(&uid) && !view.deleting.contains(&uid) {
                // Not by this backend: its dependents may be left behind.
                view.sweep_due = true;
            }
            if view.jobs.items.get(&name).is_some_and(|j| j.uid == uid) {
                view.jobs.items.remove(&name);
            }
            view.jobs.synced = view.jobs.building.is_none();
        }
        Ok(Event::Init) => view.jobs.building = Some(HashMap::new()),
        Ok(Event::InitApply(job)) => {
            let uid = job.metadata.uid.clone().unwrap_or_default();
            if let (Some(building), false) =
                (view.jobs.building.as_mut(), view.deleted.contains(&uid))
                && let Some((name, entry)) = cached(&job)
            {
                building.insert(name, entry);
            }
        }
        Ok(Event::InitDone) => {
            if let Some(items) = view.jobs.building.take() {
                let live: HashSet<&str> = items.values().map(|j| j.uid.as_str()).collect();
                // A Job deleted before the list was taken: no event will report it.
                view.deleted.retain(|uid| live.contains(uid.as_str()));
                view.jobs.items = items;
            }
            view.jobs.synced = true;
            // Jobs may have gone while nobody watched.
            view.sweep_due = true;
        }
        Err(err) => {
            warn!(error = %err, "the watch of lease Jobs failed; listing from the API until it recovers");
            view.jobs.synced = false;
            view.sweep_due = true;
        }
    }
}

fn on_service(view: &mut View, event: Result<Event<Service>, watcher::Error>) {
    let store = &mut view.services;
    match event {
        Ok(Event::Apply(service)) => {
            if let Some(name) = service.metadata.name.clone() {
                store.items.insert(name, objects::node_port(&service));
            }
            store.synced = store.building.is_none();
        }
        Ok(Event::Delete(service)) => {
            if let Some(name) = &service.metadata.name {
                store.items.remove(name);
            }
            store.synced = store.building.is_none();
        }
        Ok(Event::Init) => store.building = Some(HashMap::new()),
        Ok(Event::InitApply(service)) => {
            if let (Some(building), Some(name)) =
                (store.building.as_mut(), service.metadata.name.clone())
            {
                building.insert(name, objects::node_port(&service));
            }
        }
        Ok(Event::InitDone) => {
            if let Some(items) = store.building.take() {
                store.items = items;
            }
            store.synced = true;
        }
        Err(err) => {
            warn!(error = %err, "the watch of lease Services failed; listing from the API until it recovers");
            store.synced = false;
        }
    }
}
