//! The fake server's REST side: authorization, list/watch, create, patch, delete
//! (storage is in `store`).

use futures::StreamExt;
use http_body::Frame;
use http_body_util::StreamBody;

use super::*;

impl FakeState {
    /// Maps a request to its RBAC attributes: (namespaced, group, resource, verb).
    pub(super) fn authorize(&mut self, seen: &Seen, resource: &str, name: Option<&str>) -> bool {
        let Some(rbac) = &self.rbac else {
            return true;
        };
        let verb = match (&seen.method, name) {
            (&Method::GET, Some(_)) => "get",
            (&Method::GET, None) if seen.query.contains_key("watch") => "watch",
            (&Method::GET, None) => "list",
            (&Method::POST, _) => "create",
            (&Method::PATCH, _) => "patch",
            (&Method::PUT, _) => "update",
            (&Method::DELETE, Some(_)) => "delete",
            (&Method::DELETE, None) => "deletecollection",
            _ => "unknown",
        };
        let group = group_of(resource);
        let namespaced = resource != "nodes";
        if rbac.allows(namespaced, group, resource, verb) {
            true
        } else {
            self.forbidden.push(format!("{verb} {group}/{resource}"));
            false
        }
    }

    pub(super) fn serve(&mut self, seen: Seen) -> (u16, FakeBody) {
        if let Some(limit) = self.log_limit
            && self.log.len() >= 2 * limit.max(1)
        {
            self.log.drain(..self.log.len() - limit);
        }
        self.log.push(seen.clone());
        if let Some(i) = self
            .faults
            .iter()
            .position(|f| f.method == seen.method && seen.path.ends_with(&f.suffix))
        {
            let f = self.faults.remove(i);
            let body = status_failure(f.code, &f.reason, "injected fault", "", "");
            return (f.code, full(serde_json::to_vec(&body).expect("json")));
        }
        let prefix_batch = format!("/apis/batch/v1/namespaces/{NS}/");
        let prefix_core = format!("/api/v1/namespaces/{NS}/");
        let rest = seen
            .path
            .strip_prefix(&prefix_batch)
            .or_else(|| seen.path.strip_prefix(&prefix_core))
            .or_else(|| seen.path.strip_prefix("/api/v1/"))
            .unwrap_or_else(|| panic!("unexpected path {}", seen.path));
        let (resource, name) = match rest.split_once('/') {
            Some((r, n)) => (r.to_owned(), Some(n.to_owned())),
            None => (rest.to_owned(), None),
        };
        let shape = match (&name, seen.query.contains_key("watch")) {
            (Some(_), _) => "",
            (None, true) => " watch",
            (None, false) if seen.method == Method::GET => " list",
            (None, false) => "",
        };
        *self
            .tally
            .entry(format!("{} {resource}{shape}", seen.method))
            .or_default() += 1;
        if !self.authorize(&seen, &resource, name.as_deref()) {
            let message = format!(
                "{resource} is forbidden: User \"system:serviceaccount:ingress-system:paygress-sidecar\" cannot {} resource \"{resource}\" in API group \"{}\"",
                seen.method,
                group_of(&resource)
            );
            let body = status_failure(403, "Forbidden", &message, &resource, "");
            return (403, full(serde_json::to_vec(&body).expect("json")));
        }
        if seen.method == Method::GET && name.is_none() && seen.query.contains_key("watch") {
            if self.refused_watches.contains(&resource) {
                let body = status_failure(500, "InternalError", "watches refused", "", "");
                return (500, full(serde_json::to_vec(&body).expect("json")));
            }
            return (200, self.watch(&resource, &seen));
        }
        let (code, body) = match (seen.method.clone(), name) {
            (Method::POST, None) => self.create(&resource, seen.body),
            (Method::GET, None) => self.list(&resource, &seen),
            (Method::GET, Some(name)) => {
                match self.objects.get(&(resource.clone(), name.clone())) {
                    Some(o) => (200, o.clone()),
                    None => self.not_found(&resource, &name),
                }
            }
            (Method::PATCH, Some(name)) => {
                assert_eq!(
                    seen.content_type.as_deref(),
                    Some("application/merge-patch+json"),
                    "only merge patches are served"
                );
                self.patch(&resource, &name, &seen.body)
            }
            (Method::DELETE, Some(name)) => self.delete(&resource, &name, &seen.body),
            (m, n) => panic!("unexpected {m} {resource}/{n:?}"),
        };
        if code < 300 && seen.method != Method::GET {
            self.reconcile();
        }
        (code, full(serde_json::to_vec(&body).expect("json")))
    }

    pub(super) fn field_name(seen: &Seen) -> Option<String> {
        seen.query.get("fieldSelector").map(|f| {
            f.strip_prefix("metadata.name=")
                .unwrap_or_else(|| panic!("unsupported field selector {f}"))
                .to_owned()
        })
    }

    pub(super) fn list(&self, resource: &str, seen: &Seen) -> (u16, Value) {
        let selector = seen.query.get("labelSelector").cloned().unwrap_or_default();
        let name = Self::field_name(seen);
        // Pages (`limit`, `continue`), as the API server serves them: in name order, the
        // token naming where the next page starts (opaque to clients; here the last
        // name served). Unlike the real server, later pages read the objects as they
        // are then, not as of the first page.
        let limit: Option<usize> = seen
            .query
            .get("limit")
            .and_then(|v| v.parse().ok())
            .filter(|n| *n > 0);
        let after = seen.query.get("continue").cloned();
        let mut items: Vec<Value> = self
            .selected(resource, &selector, name.as_deref())
            .into_iter()
            .filter(|o| {
                after
                    .as_deref()
                    .is_none_or(|a| o["metadata"]["name"].as_str().is_some_and(|n| n > a))
            })
            .cloned()
            .collect();
        let mut metadata = json!({ "resourceVersion": self.next_rv.to_string() });
        if let Some(limit) = limit
            && items.len() > limit
        {
            metadata["remainingItemCount"] = json!(items.len() - limit);
            items.truncate(limit);
            metadata["continue"] = items[limit - 1]["metadata"]["name"].clone();
        }
        (
            200,
            json!({
                "kind": format!("{}List", kind_of(resource)),
                "apiVersion": if resource == "jobs" { "batch/v1" } else { "v1" },
                "metadata": metadata,
                "items": items,
            }),
        )
    }

    /// A watch from `resourceVersion`: the events since then, then live ones; without
    /// one (or from "0"), the matching objects as they are now, then live events.
    pub(super) fn watch(&mut self, resource: &str, seen: &Seen) -> FakeBody {
        let (tx, rx) = futures::channel::mpsc::unbounded::<Bytes>();
        let labels = seen.query.get("labelSelector").cloned().unwrap_or_default();
        let name = Self::field_name(seen);
        let since: u64 = seen
            .query
            .get("resourceVersion")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let wanted_event = |event: &Event| {
            matches_labels(&event.labels, &labels)
                && name.as_deref().is_none_or(|n| event.name == n)
        };
        let send = |event: &Value| {
            let mut line = serde_json::to_vec(event).expect("json");
            line.push(b'\n');
            tx.unbounded_send(Bytes::from(line)).expect("open");
        };
        if since == 0 {
            // No resourceVersion (or "0"): the current state as synthetic ADDED events,
            // then what changes, as the real API server does.
            for object in self.selected(resource, &labels, name.as_deref()) {
                send(&json!({ "type": "ADDED", "object": object }));
            }
        } else if self
            .history
            .front()
            .is_some_and(|oldest| oldest.rv > since + 1)
        {
            // Events after `since` were dropped: 410 Gone, and the client lists again.
            let status = status_failure(
                410,
                "Expired",
                &format!("too old resource version: {since}"),
                "",
                "",
            );
            send(&json!({ "type": "ERROR", "object": status }));
            drop(tx);
            return StreamBody::new(rx.map(|b| Ok::<_, Infallible>(Frame::data(b)))).boxed_unsync();
        } else {
            let first = self.history.partition_point(|e| e.rv <= since);
            for event in self.history.range(first..) {
                if event.resource == resource && wanted_event(event) {
                    tx.unbounded_send(event.line.clone()).expect("open");
                }
            }
        }
        self.watches.push(Watch {
            resource: resource.to_owned(),
            labels,
            name,
            tx,
        });
        StreamBody::new(rx.map(|b| Ok::<_, Infallible>(Frame::data(b)))).boxed_unsync()
    }

    pub(super) fn not_found(&self, resource: &str, name: &str) -> (u16, Value) {
        let group = if resource == "jobs" { ".batch" } else { "" };
        (
            404,
            status_failure(
                404,
                "NotFound",
                &format!("{resource}{group} \"{name}\" not found"),
                resource,
                name,
            ),
        )
    }

    pub(super) fn validate(
        &self,
        resource: &str,
        name: &str,
        object: &Value,
    ) -> Option<(u16, Value)> {
        let kind = kind_of(resource);
        let msg = match resource {
            "jobs" => {
                let spec = &object["spec"];
                if spec["activeDeadlineSeconds"].as_i64().unwrap_or(1) <= 0 {
                    Some("spec.activeDeadlineSeconds: must be greater than 0".to_owned())
                } else if spec["backoffLimit"].as_i64().unwrap_or(0) < 0 {
                    Some("spec.backoffLimit: must be greater than or equal to 0".to_owned())
                } else if spec.get("podFailurePolicy").is_some()
                    && spec["template"]["spec"]["restartPolicy"] != "Never"
                {
                    Some(
                        "spec.podFailurePolicy: Invalid value: only \"Never\" is supported when podFailurePolicy is specified"
                            .to_owned(),
                    )
                } else {
                    validate_pod_spec(&spec["template"]["spec"], "spec.template.spec")
                }
            }
            "services" => {
                let t = object["spec"]["type"].as_str().unwrap_or("ClusterIP");
                if !["ClusterIP", "NodePort", "LoadBalancer"].contains(&t) {
                    Some(format!("spec.type: Unsupported value: {t:?}"))
                } else {
                    object["spec"]["ports"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|p| !(1..=65_535).contains(&p["port"].as_i64().unwrap_or(0)))
                        .map(|p| format!("spec.ports.port: Invalid value: {}", p["port"]))
                }
            }
            "secrets" => object["stringData"]
                .as_object()
                .into_iter()
                .flatten()
                .find(|(k, _)| !valid_env_name(k))
                .map(|(k, _)| format!("data[{k}]: Invalid value: {k:?}")),
            _ => None,
        }?;
        Some(invalid(kind, name, &msg))
    }

    pub(super) fn create(&mut self, resource: &str, mut object: Value) -> (u16, Value) {
        let name = object["metadata"]["name"]
            .as_str()
            .expect("name")
            .to_owned();
        let key = (resource.to_owned(), name.clone());
        if self.objects.contains_key(&key) {
            let group = if resource == "jobs" { ".batch" } else { "" };
            return (
                409,
                status_failure(
                    409,
                    "AlreadyExists",
                    &format!("{resource}{group} \"{name}\" already exists"),
                    resource,
                    &name,
                ),
            );
        }
        if let Some(err) = self.validate(resource, &name, &object) {
            return err;
        }
        self.next_uid += 1;
        let uid = format!("00000000-0000-4000-8000-{:012}", self.next_uid);
        let now = self.clock.now();
        let meta = object["metadata"].as_object_mut().expect("metadata");
        meta.insert("uid".into(), json!(uid));
        meta.insert("creationTimestamp".into(), json!(time(now)));
        if resource == "services" {
            let port = self.next_node_port;
            self.next_node_port += 1;
            object["spec"]["clusterIP"] = json!("10.96.0.10");
            object["spec"]["ports"][0]["nodePort"] = json!(port);
        }
        if resource == "jobs" {
            let selector = json!({ "matchLabels": { "batch.kubernetes.io/controller-uid": uid } });
            object["spec"]["selector"] = selector;
            object["status"] = json!({});
        }
        if resource == "secrets" {
            // The API stores stringData as base64 data and never returns stringData.
            if let Some(sd) = object.as_object_mut().expect("object").remove("stringData") {
                let data: serde_json::Map<String, Value> = sd
                    .as_object()
                    .expect("stringData")
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            json!(b64(v.as_str().expect("string").as_bytes())),
                        )
                    })
                    .collect();
                object["data"] = Value::Object(data);
            }
        }
        (201, self.put(resource, object))
    }

    pub(super) fn patch(&mut self, resource: &str, name: &str, patch: &Value) -> (u16, Value) {
        let key = (resource.to_owned(), name.to_owned());
        let Some(current) = self.objects.get(&key).cloned() else {
            return self.not_found(resource, name);
        };
        if let Some(rv) = patch["metadata"]["resourceVersion"].as_str()
            && Some(rv) != current["metadata"]["resourceVersion"].as_str()
        {
            let group = if resource == "jobs" { ".batch" } else { "" };
            return (
                409,
                status_failure(
                    409,
                    "Conflict",
                    &format!(
                        "Operation cannot be fulfilled on {resource}{group} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
                    ),
                    resource,
                    name,
                ),
            );
        }
        let mut next = current.clone();
        merge(&mut next, patch);
        if resource == "pods" {
            // The real API's rule: a Pod's activeDeadlineSeconds may only be lowered.
            let old = current["spec"]["activeDeadlineSeconds"].as_i64();
            let new = next["spec"]["activeDeadlineSeconds"].as_i64();
            let raised = match (old, new) {
                (Some(o), Some(n)) => n > o,
                (None, Some(_)) => false,
                (Some(_), None) => true,
                (None, None) => false,
            };
            if raised {
                return invalid(
                    "Pod",
                    name,
                    &format!(
                        "spec.activeDeadlineSeconds: Invalid value: {}: must be less than or equal to previous value",
                        new.unwrap_or(0)
                    ),
                );
            }
        }
        if resource == "jobs" && next["spec"]["template"] != current["spec"]["template"] {
            return invalid(
                "Job",
                name,
                "spec.template: Invalid value: field is immutable",
            );
        }
        if let Some(err) = self.validate(resource, name, &next) {
            return err;
        }
        (200, self.put(resource, next))
    }

    pub(super) fn delete(&mut self, resource: &str, name: &str, body: &Value) -> (u16, Value) {
        let Some(object) = self.remove(resource, name) else {
            return self.not_found(resource, name);
        };
        let uid = object["metadata"]["uid"].as_str().unwrap_or("").to_owned();
        // Jobs orphan their dependents unless asked otherwise (the API's legacy default).
        let policy = body["propagationPolicy"]
            .as_str()
            .unwrap_or(if resource == "jobs" {
                "Orphan"
            } else {
                "Background"
            });
        if policy == "Orphan" {
            // The garbage collector removes the ownerReferences to the deleted owner.
            let owned = self.owned_by(&uid);
            for (r, n) in owned {
                let mut o = self.objects[&(r.clone(), n)].clone();
                let refs: Vec<Value> = o["metadata"]["ownerReferences"]
                    .as_array()
                    .expect("refs")
                    .iter()
                    .filter(|x| x["uid"] != uid.as_str())
                    .cloned()
                    .collect();
                o["metadata"]
                    .as_object_mut()
                    .expect("metadata")
                    .remove("ownerReferences");
                if !refs.is_empty() {
                    o["metadata"]["ownerReferences"] = json!(refs);
                }
                self.put(&r, o);
            }
        } else {
            self.collect_garbage_of(&uid);
        }
        (200, status_success(kind_of(resource), name, &uid))
    }
}
