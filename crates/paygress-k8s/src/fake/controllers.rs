//! The fake cluster's controllers: garbage collector, Job controller, kubelet.

use super::*;

impl FakeState {
    /// The garbage collector: removes every object whose owners no longer exist.
    pub fn collect_garbage(&mut self) {
        loop {
            let uids: std::collections::HashSet<String> = self
                .objects
                .values()
                .filter_map(|o| o["metadata"]["uid"].as_str().map(str::to_owned))
                .collect();
            let orphaned: Vec<(String, String)> = self
                .objects
                .iter()
                .filter(|(_, o)| {
                    o["metadata"]["ownerReferences"]
                        .as_array()
                        .is_some_and(|refs| {
                            !refs.is_empty()
                                && refs
                                    .iter()
                                    .all(|r| !uids.contains(r["uid"].as_str().unwrap_or("")))
                        })
                })
                .map(|(k, _)| k.clone())
                .collect();
            if orphaned.is_empty() {
                return;
            }
            for (r, n) in orphaned {
                self.remove(&r, &n);
            }
        }
    }

    /// The garbage collector after the object with `uid` was removed: removes what it
    /// owned (and what that owned, and so on) once none of its owners exist. Reads the
    /// owner index, never every object: a delete among thousands of leases costs what
    /// the lease's own objects cost.
    pub(super) fn collect_garbage_of(&mut self, uid: &str) {
        let mut gone: Vec<String> = vec![uid.to_owned()];
        while !gone.is_empty() {
            let owned: BTreeSet<(String, String)> =
                gone.iter().flat_map(|g| self.owned_by(g)).collect();
            let mut next = Vec::new();
            for (r, n) in owned {
                let Some(object) = self.objects.get(&(r.clone(), n.clone())) else {
                    continue;
                };
                let live_owner = object["metadata"]["ownerReferences"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|x| x["uid"].as_str())
                    .any(|u| !gone.iter().any(|g| g == u) && self.uid_exists(u));
                if live_owner {
                    continue;
                }
                if let Some(removed) = self.remove(&r, &n)
                    && let Some(u) = removed["metadata"]["uid"].as_str()
                {
                    next.push(u.to_owned());
                }
            }
            gone = next;
        }
    }

    /// Stored objects of `resource` whose names start with `prefix`, in name order.
    pub(super) fn named(&self, resource: &str, prefix: &str) -> Vec<Value> {
        self.objects
            .range((resource.to_owned(), prefix.to_owned())..)
            .take_while(|((r, n), _)| r == resource && n.starts_with(prefix))
            .map(|(_, o)| o.clone())
            .collect()
    }

    /// Like [`named`](Self::named), only the pods still Pending (the kubelet's work):
    /// with thousands of running leases, a tick copies none of them.
    pub(super) fn pending(&self, resource: &str, prefix: &str) -> Vec<Value> {
        self.objects
            .range((resource.to_owned(), prefix.to_owned())..)
            .take_while(|((r, n), _)| r == resource && n.starts_with(prefix))
            .filter(|(_, o)| o["status"]["phase"] == "Pending")
            .map(|(_, o)| o.clone())
            .collect()
    }

    /// The pods of Job `job` (the controller names them `{job}-{suffix}`).
    pub(super) fn pods_of(&self, job: &str, job_uid: &str) -> Vec<Value> {
        self.named("pods", &format!("{job}-"))
            .into_iter()
            .filter(|o| {
                o["metadata"]["ownerReferences"]
                    .as_array()
                    .is_some_and(|refs| refs.iter().any(|x| x["uid"] == job_uid))
            })
            .collect()
    }

    /// The controllers, run after every write and every clock tick: the Job controller
    /// (pods, startTime, deadlines, pod failure policy, conditions, TTL), the kubelet
    /// (readiness after `ready_after`) and the cloud (LoadBalancer addresses). When the
    /// clock or a setting changed since the last run they go over every object;
    /// otherwise over the Jobs written since (and their pods) only: nothing else can
    /// have changed.
    pub fn reconcile(&mut self) {
        let now = self.clock.now();
        let everything = self.synced_at != Some(now);
        let dirty = std::mem::take(&mut self.dirty);
        let jobs: Vec<String> = if everything {
            // A running Job whose deadline is ahead and whose pod is fine needs nothing:
            // with thousands of leases, a tick copies none of them.
            self.names("jobs")
                .into_iter()
                .filter(|name| {
                    self.objects
                        .get(&("jobs".to_owned(), name.clone()))
                        .is_some_and(|job| !self.quiet(job, now))
                })
                .collect()
        } else {
            dirty.into_iter().collect()
        };
        for name in &jobs {
            if let Some(job) = self.objects.get(&("jobs".to_owned(), name.clone())) {
                self.sync_job(job.clone(), now);
            }
        }
        if everything {
            self.kubelet(now, self.pending("pods", ""));
        } else {
            for name in &jobs {
                let pods = self.pending("pods", &format!("{name}-"));
                self.kubelet(now, pods);
            }
        }
        if let Some(ip) = self.load_balancer_ip.clone() {
            let pending: Vec<Value> = self
                .named("services", "")
                .into_iter()
                .filter(|o| {
                    o["spec"]["type"] == "LoadBalancer"
                        && o["status"]["loadBalancer"]["ingress"].is_null()
                })
                .collect();
            for mut svc in pending {
                svc["status"] = json!({ "loadBalancer": { "ingress": [{ "ip": ip }] } });
                self.put("services", svc);
            }
        }
        self.synced_at = Some(now);
    }

    /// Whether [`sync_job`](Self::sync_job) would leave the Job as it is: started, not
    /// suspended nor finished, its deadline ahead, and exactly its `status.active` pods,
    /// none of them failed.
    fn quiet(&self, job: &Value, now: Timestamp) -> bool {
        if job["spec"]["suspend"] == true
            || condition_true(job, "Failed")
            || condition_true(job, "Complete")
        {
            return false;
        }
        let Some(start) = parse_time(&job["status"]["startTime"]) else {
            return false;
        };
        if let Some(d) = job["spec"]["activeDeadlineSeconds"].as_i64()
            && now >= start + jiff::SignedDuration::from_secs(d)
        {
            return false;
        }
        let name = job["metadata"]["name"].as_str().unwrap_or("");
        let uid = &job["metadata"]["uid"];
        let prefix = format!("{name}-");
        let mut live = 0;
        for (_, pod) in self
            .objects
            .range(("pods".to_owned(), prefix.clone())..)
            .take_while(|((r, n), _)| r == "pods" && n.starts_with(&prefix))
        {
            let ours = pod["metadata"]["ownerReferences"]
                .as_array()
                .is_some_and(|refs| refs.iter().any(|x| &x["uid"] == uid));
            if !ours {
                continue;
            }
            if pod["status"]["phase"] == "Failed" {
                return false;
            }
            live += 1;
        }
        live > 0 && job["status"]["active"].as_u64() == Some(live)
    }

    pub(super) fn sync_job(&mut self, mut job: Value, now: Timestamp) {
        let name = job["metadata"]["name"].as_str().expect("name").to_owned();
        let uid = job["metadata"]["uid"].as_str().expect("uid").to_owned();
        let pods = self.pods_of(&name, &uid);
        let finished = condition_true(&job, "Failed") || condition_true(&job, "Complete");
        if finished {
            for p in pods {
                self.remove("pods", p["metadata"]["name"].as_str().expect("name"));
            }
            let ended = job["status"]["conditions"]
                .as_array()
                .and_then(|cs| {
                    cs.iter()
                        .find(|c| c["type"] == "Failed" || c["type"] == "Complete")
                })
                .and_then(|c| parse_time(&c["lastTransitionTime"]));
            let ttl = job["spec"]["ttlSecondsAfterFinished"].as_i64();
            if let (Some(ended), Some(ttl)) = (ended, ttl)
                && now >= ended + jiff::SignedDuration::from_secs(ttl)
            {
                self.remove("jobs", &name);
                self.collect_garbage_of(&uid);
            }
            return;
        }
        let before = job.clone();
        if job["spec"]["suspend"] == true {
            // Suspended: no pods, and the clock restarts on resume.
            for p in &pods {
                self.remove("pods", p["metadata"]["name"].as_str().expect("name"));
            }
            if let Some(status) = job["status"].as_object_mut() {
                status.remove("startTime");
                status.insert("active".into(), json!(0));
            }
        } else {
            if job["status"]["startTime"].is_null() {
                job["status"]["startTime"] = json!(time(now));
            }
            let start = parse_time(&job["status"]["startTime"]).expect("startTime");
            let deadline = job["spec"]["activeDeadlineSeconds"].as_i64();
            // The pod failure policy: a disrupted pod is ignored (replaced), any other
            // failure fails the Job (backoffLimit 0).
            let mut live = Vec::new();
            let mut failure = None;
            for p in pods {
                if p["status"]["phase"] == "Failed" {
                    let ignored = job["spec"]["podFailurePolicy"]["rules"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|rule| {
                            rule["action"] == "Ignore"
                                && rule["onPodConditions"]
                                    .as_array()
                                    .into_iter()
                                    .flatten()
                                    .any(|pc| condition_true(&p, pc["type"].as_str().unwrap_or("")))
                        });
                    self.remove("pods", p["metadata"]["name"].as_str().expect("name"));
                    if !ignored {
                        failure = Some(if job["spec"]["podFailurePolicy"].is_null() {
                            "BackoffLimitExceeded"
                        } else {
                            "PodFailed"
                        });
                    }
                } else {
                    live.push(p);
                }
            }
            let expired =
                deadline.is_some_and(|d| now >= start + jiff::SignedDuration::from_secs(d));
            if let Some(reason) = failure.or(expired.then_some("DeadlineExceeded")) {
                for p in live {
                    self.remove("pods", p["metadata"]["name"].as_str().expect("name"));
                }
                let t = time(now);
                job["status"]["active"] = json!(0);
                job["status"]["failed"] = json!(1);
                job["status"]["conditions"] = json!([
                    { "type": "FailureTarget", "status": "True", "reason": reason, "lastTransitionTime": t },
                    { "type": "Failed", "status": "True", "reason": reason, "lastTransitionTime": t },
                ]);
            } else if live.is_empty() {
                self.next_uid += 1;
                let pod_name = format!("{name}-{:05}", self.next_uid);
                let pod = json!({
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {
                        "name": pod_name,
                        "namespace": NS,
                        "labels": job["spec"]["template"]["metadata"]["labels"],
                        "ownerReferences": [{
                            "apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": uid,
                            "controller": true, "blockOwnerDeletion": true,
                        }],
                        "uid": format!("pod-{}", self.next_uid),
                        "creationTimestamp": time(now),
                    },
                    "spec": job["spec"]["template"]["spec"],
                    "status": { "phase": "Pending" },
                });
                let mut pod = pod;
                pod["spec"]["nodeName"] = json!("kind-worker");
                self.put("pods", pod);
                job["status"]["active"] = json!(1);
            } else {
                job["status"]["active"] = json!(live.len());
            }
        }
        if job != before {
            self.put("jobs", job);
        }
    }

    /// The kubelet: each Pending pod of `pods` turns Running and Ready once it is
    /// `ready_after` old.
    pub(super) fn kubelet(&mut self, now: Timestamp, pods: Vec<Value>) {
        let Some(delay) = self.ready_after else {
            return;
        };
        let starting: Vec<Value> = pods
            .into_iter()
            .filter(|o| o["status"]["phase"] == "Pending")
            .collect();
        for mut pod in starting {
            // The kubelet cannot start a container whose environment reads a Secret that
            // does not exist (CreateContainerConfigError); it retries, here at the next
            // reconcile.
            if !self.env_secrets_exist(&pod) {
                self.wait_for_secrets(&pod);
                continue;
            }
            let created = parse_time(&pod["metadata"]["creationTimestamp"]).expect("created");
            if now >= created + jiff::SignedDuration::from_secs(delay) {
                pod["status"] = json!({
                    "phase": "Running",
                    "conditions": [{ "type": "Ready", "status": "True", "lastTransitionTime": time(now) }],
                });
                self.put("pods", pod);
            }
        }
    }

    /// Remembers the Secrets `pod` waits for, so that writing one wakes its Job's pods
    /// (the kubelet retries on its own; here, when the Secret appears).
    fn wait_for_secrets(&mut self, pod: &Value) {
        let jobs: Vec<String> = pod["metadata"]["ownerReferences"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["kind"] == "Job")
            .filter_map(|r| r["name"].as_str().map(str::to_owned))
            .collect();
        let secrets: Vec<String> = pod["spec"]["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|c| c["env"].as_array().into_iter().flatten())
            .filter_map(|e| e["valueFrom"]["secretKeyRef"]["name"].as_str())
            .filter(|name| {
                !self
                    .objects
                    .contains_key(&("secrets".to_owned(), (*name).to_owned()))
            })
            .map(str::to_owned)
            .collect();
        for secret in secrets {
            self.waiting
                .entry(secret)
                .or_default()
                .extend(jobs.iter().cloned());
        }
    }

    /// Whether every Secret the pod's containers read their environment from exists.
    fn env_secrets_exist(&self, pod: &Value) -> bool {
        pod["spec"]["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|c| c["env"].as_array().into_iter().flatten())
            .filter_map(|e| e["valueFrom"]["secretKeyRef"]["name"].as_str())
            .all(|name| {
                self.objects
                    .contains_key(&("secrets".to_owned(), name.to_owned()))
            })
    }
}
