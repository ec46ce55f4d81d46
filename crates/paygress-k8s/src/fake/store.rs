//! The fake server's storage: objects by resource and name, resource versions, the
//! owner and uid indexes the garbage collector reads, the label index lists and
//! watches read, and the watch history.

use super::*;

impl FakeState {
    pub(super) fn names(&self, resource: &str) -> Vec<String> {
        self.objects
            .range((resource.to_owned(), String::new())..)
            .take_while(|((r, _), _)| r == resource)
            .map(|((_, n), _)| n.clone())
            .collect()
    }

    pub(super) fn bump(&mut self) -> String {
        self.next_rv += 1;
        self.next_rv.to_string()
    }

    /// Stores `object` with a new resourceVersion and tells the watches.
    pub(super) fn put(&mut self, resource: &str, mut object: Value) -> Value {
        let name = object["metadata"]["name"]
            .as_str()
            .expect("name")
            .to_owned();
        let rv = self.bump();
        object["metadata"]["resourceVersion"] = json!(rv);
        let key = (resource.to_owned(), name);
        let kind = if self.objects.contains_key(&key) {
            "MODIFIED"
        } else {
            "ADDED"
        };
        let old = self.objects.insert(key.clone(), object.clone());
        if let Some(old) = &old {
            self.unindex(&key, old);
        }
        self.index(&key, &object);
        self.touch(resource, &object);
        self.notify(resource, kind, &object);
        object
    }

    /// Removes an object and tells the watches.
    pub(super) fn remove(&mut self, resource: &str, name: &str) -> Option<Value> {
        let key = (resource.to_owned(), name.to_owned());
        let mut object = self.objects.remove(&key)?;
        self.unindex(&key, &object);
        object["metadata"]["resourceVersion"] = json!(self.bump());
        self.touch(resource, &object);
        self.notify(resource, "DELETED", &object);
        Some(object)
    }

    /// The `key=value` terms of an object's labels, as an equality selector names them.
    fn label_terms(object: &Value) -> impl Iterator<Item = String> + '_ {
        object["metadata"]["labels"]
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| Some(format!("{k}={}", v.as_str()?)))
    }

    /// The stored objects of `resource` that match the equality `selector` (and are
    /// named `name`, when given), in name order: what a list or a watch from no
    /// resourceVersion answers. Reads the label index for the selector's narrowest term,
    /// so that one lease's objects among thousands cost what they are, not what all the
    /// others are.
    pub(super) fn selected(
        &self,
        resource: &str,
        selector: &str,
        name: Option<&str>,
    ) -> Vec<&Value> {
        if let Some(name) = name {
            return self
                .objects
                .get(&(resource.to_owned(), name.to_owned()))
                .filter(|o| matches_selector(o, selector))
                .into_iter()
                .collect();
        }
        let narrowest = selector
            .split(',')
            .filter(|t| !t.is_empty())
            .map(|term| {
                let (k, v) = term.split_once('=').expect("equality selector");
                self.labeled.get(&(resource.to_owned(), format!("{k}={v}")))
            })
            .min_by_key(|names| names.map_or(0, BTreeSet::len));
        match narrowest {
            // No selector: every object of the resource.
            None => self
                .objects
                .range((resource.to_owned(), String::new())..)
                .take_while(|((r, _), _)| r == resource)
                .map(|(_, o)| o)
                .collect(),
            // A term no object carries.
            Some(None) => Vec::new(),
            Some(Some(names)) => names
                .iter()
                .filter_map(|n| self.objects.get(&(resource.to_owned(), n.clone())))
                .filter(|o| matches_selector(o, selector))
                .collect(),
        }
    }

    fn owner_uids(object: &Value) -> impl Iterator<Item = &str> {
        object["metadata"]["ownerReferences"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["uid"].as_str())
    }

    /// Adds a stored object to the uid, owner and label indexes.
    fn index(&mut self, key: &(String, String), object: &Value) {
        for term in Self::label_terms(object) {
            self.labeled
                .entry((key.0.clone(), term))
                .or_default()
                .insert(key.1.clone());
        }
        if let Some(uid) = object["metadata"]["uid"].as_str() {
            self.uids.insert(uid.to_owned(), key.clone());
        }
        for owner in Self::owner_uids(object) {
            self.owned
                .entry(owner.to_owned())
                .or_default()
                .insert(key.clone());
        }
    }

    /// Removes an object from the uid, owner and label indexes.
    fn unindex(&mut self, key: &(String, String), object: &Value) {
        for term in Self::label_terms(object) {
            let entry = (key.0.clone(), term);
            if let Some(names) = self.labeled.get_mut(&entry) {
                names.remove(&key.1);
                if names.is_empty() {
                    self.labeled.remove(&entry);
                }
            }
        }
        if let Some(uid) = object["metadata"]["uid"].as_str()
            && self.uids.get(uid) == Some(key)
        {
            self.uids.remove(uid);
        }
        for owner in Self::owner_uids(object) {
            if let Some(set) = self.owned.get_mut(owner) {
                set.remove(key);
                if set.is_empty() {
                    self.owned.remove(owner);
                }
            }
        }
    }

    /// The objects that name `uid` among their owners.
    pub(super) fn owned_by(&self, uid: &str) -> Vec<(String, String)> {
        self.owned
            .get(uid)
            .map(|set| set.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Whether an object with `uid` exists.
    pub(super) fn uid_exists(&self, uid: &str) -> bool {
        self.uids.contains_key(uid)
    }

    /// Marks the Job an object belongs to (itself, or a pod's owner) for the next sync.
    fn touch(&mut self, resource: &str, object: &Value) {
        match resource {
            "jobs" => {
                if let Some(name) = object["metadata"]["name"].as_str() {
                    self.dirty.insert(name.to_owned());
                }
            }
            // A pod waits for the Secret its environment reads: its Job's pods are
            // looked at again when a Secret it owns, or one they wait for, is written.
            "pods" | "secrets" => {
                if resource == "secrets"
                    && let Some(jobs) = object["metadata"]["name"]
                        .as_str()
                        .and_then(|name| self.waiting.remove(name))
                {
                    self.dirty.extend(jobs);
                }
                for owner in object["metadata"]["ownerReferences"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|r| r["kind"] == "Job")
                {
                    if let Some(name) = owner["name"].as_str() {
                        self.dirty.insert(name.to_owned());
                    }
                }
            }
            _ => {}
        }
    }

    pub(super) fn notify(&mut self, resource: &str, kind: &str, object: &Value) {
        // Serialised from a borrow: a `json!` event would deep-copy the object first.
        #[derive(serde::Serialize)]
        struct WatchEvent<'a> {
            #[serde(rename = "type")]
            kind: &'a str,
            object: &'a Value,
        }
        let mut line = serde_json::to_vec(&WatchEvent { kind, object }).expect("json");
        line.push(b'\n');
        let line = Bytes::from(line);
        if self.history.len() >= HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(Event {
            rv: self.next_rv,
            resource: resource.to_owned(),
            name: object["metadata"]["name"].as_str().unwrap_or("").to_owned(),
            labels: object["metadata"]["labels"].clone(),
            line: line.clone(),
        });
        self.watches.retain(|w| {
            if w.resource == resource
                && matches_selector(object, &w.labels)
                && w.name
                    .as_deref()
                    .is_none_or(|n| object["metadata"]["name"] == n)
            {
                w.tx.unbounded_send(line.clone()).is_ok()
            } else {
                !w.tx.is_closed()
            }
        });
    }
}
