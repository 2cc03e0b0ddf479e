//! Extensions: how the layers above storage attach to an open store. A layer keeps its
//! per-store state (the policy cache, the span writer, the consensus group, the syncer) in an
//! [`Extension`] of its own type, found by type, and may hook the execution lifecycle: refuse a
//! step (a syncer whose lease elsewhere was lost), learn that an execution changed (to push
//! it), and hold a step or a finish until its changes are safe elsewhere. Storage knows none of
//! these layers; they know storage.

use std::any::{Any, TypeId};
use std::sync::Arc;

use parking_lot::RwLock;

use crate::error::Result;
use crate::execution::Run;
use crate::store::Store;

/// Per-store state of a layer above storage, with optional hooks into the execution
/// lifecycle. Every hook has a default that does nothing.
pub trait Extension: Any + Send + Sync {
    /// The store is closing (its last handle dropped): stop background work and store what is
    /// queued. Called before RocksDB closes, in the reverse order of attachment.
    fn close(&self) {}
    /// A step of `run` is about to run its body (the journal has no checkpoint at its
    /// position). An error stops the step before it runs.
    fn before_step(&self, _run: &Run) -> Result<()> {
        Ok(())
    }
    /// The records of `execution_id` changed (a checkpoint, a status, a rollback, a fork).
    fn changed(&self, _execution_id: &str) {}
    /// `execution_id` is about to be erased: store what this extension still queues for it
    /// (spans), so that the erasure finds it.
    fn before_erase(&self, _execution_id: &str) -> Result<()> {
        Ok(())
    }
    /// A step was recorded, or the execution finished: return once its changes are as safe
    /// as this extension promises (e.g. in a cluster).
    fn barrier(&self, _execution_id: &str) -> Result<()> {
        Ok(())
    }
}

#[derive(Clone)]
struct Entry {
    id: TypeId,
    any: Arc<dyn Any + Send + Sync>,
    hooks: Arc<dyn Extension>,
}

/// The extensions of one open store, in the order they were attached. Hooks run on a
/// snapshot of the list, without the lock: a hook may wait (a barrier) or attach.
#[derive(Default)]
pub(crate) struct Extensions {
    entries: RwLock<Arc<Vec<Entry>>>,
}

impl Extensions {
    fn find<T: Extension>(entries: &[Entry]) -> Option<Arc<T>> {
        let e = entries.iter().find(|e| e.id == TypeId::of::<T>())?;
        e.any.clone().downcast::<T>().ok()
    }

    pub(crate) fn each(&self, mut f: impl FnMut(&dyn Extension) -> Result<()>) -> Result<()> {
        let entries = self.entries.read().clone();
        for e in entries.iter() {
            f(&*e.hooks)?;
        }
        Ok(())
    }

    /// Closes every extension, last attached first; called once, when the store closes.
    pub(crate) fn close(&self) {
        let entries = std::mem::take(&mut *self.entries.write());
        for e in entries.iter().rev() {
            e.hooks.close();
        }
    }
}

impl Store {
    /// This store's extension of type `T`, if a layer attached one.
    pub fn extension<T: Extension>(&self) -> Option<Arc<T>> {
        Extensions::find(&self.inner.extensions.entries.read())
    }

    /// This store's extension of type `T`, attaching `make()` first when there is none.
    /// `make` runs under the extensions' lock: it must not ask the store for extensions.
    pub fn extension_or_insert_with<T: Extension>(&self, make: impl FnOnce() -> T) -> Arc<T> {
        if let Some(e) = self.extension::<T>() {
            return e;
        }
        let mut entries = self.inner.extensions.entries.write();
        if let Some(e) = Extensions::find::<T>(&entries) {
            return e;
        }
        let t = Arc::new(make());
        Arc::make_mut(&mut entries).push(Entry {
            id: TypeId::of::<T>(),
            any: t.clone(),
            hooks: t.clone(),
        });
        t
    }

    /// Attaches `ext` unless an extension of its type is attached already; then gives `ext`
    /// back with the one in place.
    pub fn attach_extension<T: Extension>(
        &self,
        ext: T,
    ) -> std::result::Result<Arc<T>, (T, Arc<T>)> {
        let mut entries = self.inner.extensions.entries.write();
        if let Some(e) = Extensions::find::<T>(&entries) {
            return Err((ext, e));
        }
        let t = Arc::new(ext);
        Arc::make_mut(&mut entries).push(Entry {
            id: TypeId::of::<T>(),
            any: t.clone(),
            hooks: t.clone(),
        });
        Ok(t)
    }

    /// Tells every extension that `execution_id` changed.
    pub(crate) fn mark_changed(&self, execution_id: &str) {
        let _ = self.inner.extensions.each(|e| {
            e.changed(execution_id);
            Ok(())
        });
    }

    /// Waits for every extension's barrier on `execution_id`.
    pub(crate) fn barrier(&self, execution_id: &str) -> Result<()> {
        self.inner.extensions.each(|e| e.barrier(execution_id))
    }
}
