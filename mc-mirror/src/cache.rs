//! Watch caches that keep only what the reconciler reads.
//!
//! kube-runtime's reflector stores every watched object whole (as a k8s-openapi struct, about
//! 2.3 KB each even without managedFields) and keys it by an `ObjectRef` that repeats name,
//! namespace, resourceVersion and uid. Here a watcher's objects are reduced by a function to a
//! compact value (see [`crate::compact`]) and kept by namespace and name; the full objects exist
//! only while an event passes through. The cache follows a watcher's events exactly as the
//! reflector's store does: `Apply` inserts, `Delete` removes, and a (re)list (`Init`,
//! `InitApply`…, `InitDone`) is collected aside and replaces the contents at `InitDone`, so
//! readers never see a half-listed cache.
//!
//! A watch can also be *joined* to another cache ([`watch_joined`]): it sees every object, but
//! keeps only those whose key the other cache holds (the target's Endpoints of exported
//! Services), so its memory follows what is exported, not the size of the watched cluster.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard};

use futures::{Stream, StreamExt as _};
use kube::runtime::WatchStreamExt as _;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;

/// Values by name. Boxed: a hash table keeps spare buckets (up to half of them after it
/// grows), which then cost a pointer each instead of a whole value.
type Names<V> = HashMap<Box<str>, Box<V>>;
/// Values by namespace (`""` for cluster-scoped objects), then name.
type Spaces<V> = HashMap<Box<str>, Names<V>>;

/// The compact values of one watch, by namespace and name. Cloning shares the contents.
pub(crate) struct Cache<V> {
    map: Arc<RwLock<Spaces<V>>>,
}

impl<V> Clone for Cache<V> {
    fn clone(&self) -> Self {
        Cache {
            map: self.map.clone(),
        }
    }
}

impl<V> Default for Cache<V> {
    fn default() -> Self {
        Cache {
            map: Arc::new(RwLock::new(HashMap::new())),
        }
    }
}

impl<V> Cache<V> {
    fn read(&self) -> RwLockReadGuard<'_, Spaces<V>> {
        self.map.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// `f` applied to the value of `namespace/name` (`""` as namespace for cluster-scoped
    /// objects), if cached.
    pub(crate) fn get<T>(&self, namespace: &str, name: &str, f: impl FnOnce(&V) -> T) -> Option<T> {
        self.read()
            .get(namespace)
            .and_then(|names| names.get(name))
            .map(|v| f(v))
    }

    /// Whether `namespace/name` is cached.
    pub(crate) fn contains(&self, namespace: &str, name: &str) -> bool {
        self.get(namespace, name, |_| ()).is_some()
    }

    /// How many objects are cached.
    pub(crate) fn len(&self) -> usize {
        self.read().values().map(HashMap::len).sum()
    }

    /// How many cached values satisfy `f`.
    pub(crate) fn count(&self, f: impl Fn(&V) -> bool) -> usize {
        self.read()
            .values()
            .flat_map(HashMap::values)
            .filter(|v| f(v))
            .count()
    }

    /// Caches `value` as `namespace/name` unless something is cached there already (a watch
    /// event applied meanwhile is newer than a read that started before it); `true` if stored.
    pub(crate) fn insert_if_vacant(&self, namespace: &str, name: &str, value: V) -> bool {
        let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
        let names = map.entry(namespace.into()).or_default();
        if names.contains_key(name) {
            return false;
        }
        names.insert(name.into(), Box::new(value));
        true
    }

    /// Forgets `namespace/name`.
    pub(crate) fn remove(&self, namespace: &str, name: &str) {
        let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(names) = map.get_mut(namespace) {
            names.remove(name);
            if names.is_empty() {
                map.remove(namespace);
            }
        }
    }

    /// What `f` returns for each cached `(namespace, name, value)`, where it returns something.
    pub(crate) fn filter_map<T>(&self, mut f: impl FnMut(&str, &str, &V) -> Option<T>) -> Vec<T> {
        let map = self.read();
        let mut out = Vec::new();
        for (ns, names) in map.iter() {
            for (name, v) in names {
                out.extend(f(ns, name, v));
            }
        }
        out
    }

    /// What `f` returns for each cached `(name, value)` in `namespace`, where it returns
    /// something.
    pub(crate) fn filter_map_in<T>(
        &self,
        namespace: &str,
        mut f: impl FnMut(&str, &V) -> Option<T>,
    ) -> Vec<T> {
        self.read()
            .get(namespace)
            .into_iter()
            .flatten()
            .filter_map(|(name, v)| f(name, v))
            .collect()
    }
}

/// Applies a watcher's events to a [`Cache`], reducing each object with a function.
pub(crate) struct Writer<V> {
    cache: Cache<V>,
    /// The objects of a (re)list in progress, installed at `InitDone`.
    buffer: Spaces<V>,
}

impl<V> Writer<V> {
    /// A writer for `cache`.
    pub(crate) fn new(cache: Cache<V>) -> Self {
        Writer {
            cache,
            buffer: HashMap::new(),
        }
    }

    /// Applies one event; objects without a name are ignored.
    pub(crate) fn apply<K: Resource>(&mut self, event: &Event<K>, compact: impl Fn(&K) -> V) {
        match event {
            Event::Apply(o) => {
                if let Some((ns, name)) = key(o) {
                    let v = compact(o);
                    let mut map = self
                        .cache
                        .map
                        .write()
                        .unwrap_or_else(PoisonError::into_inner);
                    map.entry(ns).or_default().insert(name, Box::new(v));
                }
            }
            Event::Delete(o) => {
                if let Some((ns, name)) = key(o) {
                    let mut map = self
                        .cache
                        .map
                        .write()
                        .unwrap_or_else(PoisonError::into_inner);
                    if let Some(names) = map.get_mut(&ns) {
                        names.remove(&name);
                        if names.is_empty() {
                            map.remove(&ns);
                        }
                    }
                }
            }
            Event::Init => self.buffer = HashMap::new(),
            Event::InitApply(o) => {
                if let Some((ns, name)) = key(o) {
                    let v = Box::new(compact(o));
                    self.buffer.entry(ns).or_default().insert(name, v);
                }
            }
            Event::InitDone => {
                let listed = std::mem::take(&mut self.buffer);
                let old = {
                    let mut map = self
                        .cache
                        .map
                        .write()
                        .unwrap_or_else(PoisonError::into_inner);
                    std::mem::replace(&mut *map, listed)
                };
                // Dropped outside the lock.
                drop(old);
            }
        }
    }
}

impl<V> Writer<V> {
    /// Applies one event of a watch joined to another cache: an object is cached only when
    /// `keep(namespace, name)` holds (an object `keep` rejects is forgotten, e.g. the Endpoints
    /// of a Service no longer exported). A `Delete` of a kept key caches `gone()` instead of
    /// removing the entry, so a read that started before the deletion cannot bring the object
    /// back through [`Cache::insert_if_vacant`].
    pub(crate) fn apply_joined<K: Resource>(
        &mut self,
        event: &Event<K>,
        compact: impl Fn(&K) -> V,
        keep: impl Fn(&str, &str) -> bool,
        gone: impl Fn() -> V,
    ) {
        let kept = |o: &K| key(o).filter(|(ns, name)| keep(ns, name));
        match event {
            Event::Apply(o) => match kept(o) {
                Some(_) => self.apply(event, compact),
                None => {
                    if let Some((ns, name)) = key(o) {
                        self.cache.remove(&ns, &name);
                    }
                }
            },
            Event::Delete(o) => match kept(o) {
                Some((ns, name)) => {
                    self.cache.remove(&ns, &name);
                    self.cache.insert_if_vacant(&ns, &name, gone());
                }
                None => self.apply(event, compact),
            },
            Event::InitApply(o) => {
                if kept(o).is_some() {
                    self.apply(event, compact);
                }
            }
            Event::Init | Event::InitDone => self.apply(event, compact),
        }
    }
}

fn key<K: Resource>(o: &K) -> Option<(Box<str>, Box<str>)> {
    let m = o.meta();
    let name = m.name.as_deref()?;
    Some((m.namespace.as_deref().unwrap_or("").into(), name.into()))
}

/// Watches `api` (with bookmarks and the default backoff) into a new [`Cache`] of
/// `compact(object)`; the stream yields each event after the cache applied it.
pub(crate) fn watch<K, V>(
    api: Api<K>,
    config: watcher::Config,
    compact: impl Fn(&K) -> V + Send + 'static,
) -> (
    Cache<V>,
    impl Stream<Item = watcher::Result<Event<K>>> + Send,
)
where
    K: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + DeserializeOwned
        + Send
        + Sync
        + 'static,
    V: Send + Sync + 'static,
{
    watch_with(api, config, move |writer, e| writer.apply(e, &compact))
}

/// Like [`watch`], joined to another cache (see [`Writer::apply_joined`]): only objects for
/// which `keep(namespace, name)` holds when their event arrives are cached. The stream yields
/// every event; whether its object was kept is for the caller to ask `keep` again.
pub(crate) fn watch_joined<K, V>(
    api: Api<K>,
    config: watcher::Config,
    compact: impl Fn(&K) -> V + Send + 'static,
    keep: impl Fn(&str, &str) -> bool + Send + 'static,
    gone: impl Fn() -> V + Send + 'static,
) -> (
    Cache<V>,
    impl Stream<Item = watcher::Result<Event<K>>> + Send,
)
where
    K: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + DeserializeOwned
        + Send
        + Sync
        + 'static,
    V: Send + Sync + 'static,
{
    watch_with(api, config, move |writer, e| {
        writer.apply_joined(e, &compact, &keep, &gone);
    })
}

/// The watch both [`watch`] and [`watch_joined`] run: each event is handed to `apply` with the
/// new cache's writer before the stream yields it.
fn watch_with<K, V>(
    api: Api<K>,
    config: watcher::Config,
    mut apply: impl FnMut(&mut Writer<V>, &Event<K>) + Send + 'static,
) -> (
    Cache<V>,
    impl Stream<Item = watcher::Result<Event<K>>> + Send,
)
where
    K: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + DeserializeOwned
        + Send
        + Sync
        + 'static,
    V: Send + Sync + 'static,
{
    let cache = Cache::default();
    let mut writer = Writer::new(cache.clone());
    let stream = watcher::watcher(api, config.any_semantic())
        .default_backoff()
        .map(move |ev| {
            if let Ok(e) = &ev {
                apply(&mut writer, e);
            }
            ev
        });
    (cache, stream)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn cm(ns: &str, name: &str, v: &str) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(ns.into()),
                ..ObjectMeta::default()
            },
            data: Some([("v".to_string(), v.to_string())].into()),
            ..ConfigMap::default()
        }
    }

    fn value(c: &ConfigMap) -> String {
        c.data
            .as_ref()
            .and_then(|d| d.get("v"))
            .cloned()
            .unwrap_or_default()
    }

    fn sorted(cache: &Cache<String>) -> Vec<String> {
        let mut all = cache.filter_map(|ns, n, v| Some(format!("{ns}/{n}={v}")));
        all.sort();
        all
    }

    #[test]
    fn events_apply_like_a_reflector_store() {
        let cache = Cache::default();
        let mut w = Writer::new(cache.clone());
        w.apply(&Event::Apply(cm("a", "x", "1")), value);
        w.apply(&Event::Apply(cm("b", "y", "2")), value);
        w.apply(&Event::Apply(cm("a", "x", "3")), value);
        assert_eq!(sorted(&cache), ["a/x=3", "b/y=2"]);
        assert_eq!(cache.get("a", "x", Clone::clone).as_deref(), Some("3"));
        assert!(cache.contains("b", "y") && !cache.contains("a", "y"));
        w.apply(&Event::Delete(cm("b", "y", "")), value);
        assert_eq!(cache.len(), 1);
        assert!(
            cache
                .filter_map_in("b", |n, _| Some(n.to_string()))
                .is_empty()
        );

        // A relist: the old contents stay visible until InitDone, then are replaced whole.
        w.apply(&Event::Init, value);
        w.apply(&Event::InitApply(cm("c", "z", "4")), value);
        assert_eq!(sorted(&cache), ["a/x=3"]);
        w.apply(&Event::InitDone, value);
        assert_eq!(sorted(&cache), ["c/z=4"]);
        assert_eq!(cache.count(|v| v == "4"), 1);
        assert_eq!(
            cache.filter_map_in("c", |n, v| Some(format!("{n}{v}"))),
            ["z4"]
        );
    }

    #[test]
    fn a_joined_watch_keeps_only_what_the_other_cache_holds() {
        let cache = Cache::default();
        let mut w = Writer::new(cache.clone());
        let exported = |ns: &str, _: &str| ns == "shop";
        let gone = || "gone".to_string();
        let mut apply = |e: Event<ConfigMap>| w.apply_joined(&e, value, exported, gone);
        // A (re)list keeps only the exported keys.
        apply(Event::Init);
        apply(Event::InitApply(cm("shop", "db", "1")));
        apply(Event::InitApply(cm("other", "db", "2")));
        apply(Event::InitDone);
        assert_eq!(sorted(&cache), ["shop/db=1"]);
        // Events of other keys are not cached.
        apply(Event::Apply(cm("other", "web", "3")));
        apply(Event::Apply(cm("shop", "web", "4")));
        assert_eq!(sorted(&cache), ["shop/db=1", "shop/web=4"]);
        // A deletion of a kept key is remembered: an older read cannot bring it back.
        apply(Event::Delete(cm("shop", "db", "")));
        assert!(!cache.insert_if_vacant("shop", "db", "stale".into()));
        assert_eq!(sorted(&cache), ["shop/db=gone", "shop/web=4"]);
        assert!(cache.insert_if_vacant("shop", "new", "5".into()));
        assert!(!cache.insert_if_vacant("shop", "new", "6".into()));
        cache.remove("shop", "new");
        cache.remove("shop", "web");
        assert_eq!(sorted(&cache), ["shop/db=gone"]);
    }

    #[test]
    fn a_joined_watch_forgets_what_stops_being_kept() {
        let cache = Cache::default();
        let mut w = Writer::new(cache.clone());
        w.apply_joined(
            &Event::Apply(cm("a", "x", "1")),
            value,
            |_, _| true,
            String::new,
        );
        assert_eq!(sorted(&cache), ["a/x=1"]);
        // The other cache no longer holds the key (unexported): the next event forgets it.
        w.apply_joined(
            &Event::Apply(cm("a", "x", "2")),
            value,
            |_, _| false,
            String::new,
        );
        assert_eq!(cache.len(), 0);
        w.apply_joined(
            &Event::Apply(cm("a", "y", "1")),
            value,
            |_, _| true,
            String::new,
        );
        w.apply_joined(
            &Event::Delete(cm("a", "y", "")),
            value,
            |_, _| false,
            String::new,
        );
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn nameless_objects_are_ignored() {
        let cache = Cache::default();
        let mut w = Writer::new(cache.clone());
        w.apply(&Event::Apply(ConfigMap::default()), value);
        assert_eq!(cache.len(), 0);
    }
}
