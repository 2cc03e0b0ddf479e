//! `Threads`: framework checkpoints, the storage behind the LangGraph.js checkpointer
//! (`omium/langgraph`). Values cross as `[type, bytes]` pairs made by the framework's own
//! serializer; the core stores them opaquely (channel values through the blob store).

use std::sync::{Arc, RwLock};

use napi::bindgen_prelude::*;
use napi_derive::napi;
use omium_core::threads::{ListQuery, NewValue, NewWrite, PutCheckpoint, ThreadTuple as CoreTuple};

use crate::convert::{blocking, coded};

#[napi(object)]
pub struct ChannelValueJs {
    pub channel: String,
    pub version: String,
    pub value_type: String,
    pub value: Buffer,
}

#[napi(object)]
pub struct PendingWriteJs {
    pub task_id: String,
    pub task_path: String,
    pub idx: i64,
    pub channel: String,
    pub value_type: String,
    pub value: Buffer,
}

#[napi(object)]
pub struct PutCheckpointJs {
    pub thread_id: String,
    pub ns: String,
    pub checkpoint_id: String,
    pub parent_id: Option<String>,
    pub checkpoint_type: String,
    pub checkpoint: Buffer,
    pub metadata_type: String,
    pub metadata: Buffer,
    /// `[key, canonical JSON of the value]` of the metadata, for `list` filters.
    pub fields: Vec<(String, String)>,
    pub run_id: Option<String>,
    /// `[channel, version]` of every channel the checkpoint refers to.
    pub channels: Vec<(String, String)>,
    /// The channel values new in this checkpoint.
    pub values: Vec<ChannelValueJs>,
}

#[napi(object)]
pub struct WriteJs {
    pub idx: i64,
    pub channel: String,
    pub value_type: String,
    pub value: Buffer,
}

#[napi(object)]
pub struct ThreadTupleJs {
    pub thread_id: String,
    pub ns: String,
    pub checkpoint_id: String,
    pub parent_id: Option<String>,
    pub checkpoint_type: String,
    pub checkpoint: Buffer,
    pub metadata_type: String,
    pub metadata: Buffer,
    pub values: Vec<ChannelValueJs>,
    pub writes: Vec<PendingWriteJs>,
}

#[napi(object)]
pub struct ListQueryJs {
    pub thread_id: Option<String>,
    pub ns: Option<String>,
    pub checkpoint_id: Option<String>,
    pub before: Option<String>,
    pub filter: Option<Vec<(String, String)>>,
    pub limit: Option<u32>,
}

fn tuple(t: CoreTuple) -> ThreadTupleJs {
    let c = t.checkpoint;
    ThreadTupleJs {
        thread_id: c.thread_id,
        ns: c.ns,
        checkpoint_id: c.checkpoint_id,
        parent_id: c.parent_id,
        checkpoint_type: c.checkpoint_type,
        checkpoint: c.checkpoint.into(),
        metadata_type: c.metadata_type,
        metadata: c.metadata.into(),
        values: t
            .values
            .into_iter()
            .map(|v| ChannelValueJs {
                channel: v.channel,
                version: v.version,
                value_type: v.value_type,
                value: v.value.into(),
            })
            .collect(),
        writes: t
            .writes
            .into_iter()
            .map(|w| PendingWriteJs {
                task_id: w.task_id,
                task_path: w.task_path,
                idx: w.idx,
                channel: w.channel,
                value_type: w.value_type,
                value: w.value.into(),
            })
            .collect(),
    }
}

#[napi]
pub struct Threads {
    inner: Arc<RwLock<Option<omium_core::threads::Threads>>>,
}

impl Threads {
    pub fn new(t: omium_core::threads::Threads) -> Threads {
        Threads {
            inner: Arc::new(RwLock::new(Some(t))),
        }
    }

    fn get(&self) -> Result<omium_core::threads::Threads> {
        let g = self
            .inner
            .read()
            .map_err(|_| coded("internal", "threads lock poisoned by a panic"))?;
        g.clone()
            .ok_or_else(|| coded("store_closed", "this checkpointer's store is closed"))
    }
}

#[napi]
impl Threads {
    /// Stores a checkpoint and its new channel values (one atomic write), on a worker thread.
    #[napi]
    pub async fn put(&self, put: PutCheckpointJs) -> Result<()> {
        let t = self.get()?;
        blocking(move || put_checkpoint(&t, &put)).await
    }

    /// [`Threads::put`] on the calling thread: for `buffered` and `none` durability, where the
    /// write does not wait for an fsync and costs less than the trip to a worker thread.
    #[napi]
    pub fn put_now(&self, put: PutCheckpointJs) -> Result<()> {
        put_checkpoint(&self.get()?, &put).map_err(crate::convert::err)
    }

    /// Stores a task's writes (one atomic write), on a worker thread.
    #[napi]
    pub async fn put_writes(
        &self,
        thread_id: String,
        ns: String,
        checkpoint_id: String,
        task_id: String,
        task_path: String,
        writes: Vec<WriteJs>,
    ) -> Result<()> {
        let t = self.get()?;
        let at = [thread_id, ns, checkpoint_id, task_id, task_path];
        blocking(move || put_task_writes(&t, &at, &writes)).await
    }

    /// [`Threads::put_writes`] on the calling thread (`buffered` and `none` durability).
    #[napi]
    pub fn put_writes_now(
        &self,
        thread_id: String,
        ns: String,
        checkpoint_id: String,
        task_id: String,
        task_path: String,
        writes: Vec<WriteJs>,
    ) -> Result<()> {
        let at = [thread_id, ns, checkpoint_id, task_id, task_path];
        put_task_writes(&self.get()?, &at, &writes).map_err(crate::convert::err)
    }

    /// The given checkpoint, or the newest of the namespace; null when there is none.
    #[napi]
    pub async fn get_tuple(
        &self,
        thread_id: String,
        ns: String,
        checkpoint_id: Option<String>,
    ) -> Result<Option<ThreadTupleJs>> {
        let t = self.get()?;
        let found = blocking(move || t.get(&thread_id, &ns, checkpoint_id.as_deref())).await?;
        Ok(found.map(tuple))
    }

    /// Checkpoints matching every given criterion, newest id first.
    #[napi]
    pub async fn list(&self, query: ListQueryJs) -> Result<Vec<ThreadTupleJs>> {
        let t = self.get()?;
        let q = ListQuery {
            thread_id: query.thread_id,
            ns: query.ns,
            checkpoint_id: query.checkpoint_id,
            before: query.before,
            filter: query.filter.unwrap_or_default(),
            limit: query.limit.map(|l| l as usize),
        };
        let found = blocking(move || t.list(&q)).await?;
        Ok(found.into_iter().map(tuple).collect())
    }

    #[napi]
    pub async fn delete_thread(&self, thread_id: String) -> Result<()> {
        let t = self.get()?;
        blocking(move || t.delete_thread(&thread_id)).await
    }

    /// Returns how many checkpoints were deleted.
    #[napi]
    pub async fn delete_for_runs(&self, run_ids: Vec<String>) -> Result<f64> {
        let t = self.get()?;
        blocking(move || t.delete_for_runs(&run_ids).map(|n| n as f64)).await
    }

    /// Returns how many checkpoints were copied.
    #[napi]
    pub async fn copy_thread(&self, source: String, target: String) -> Result<f64> {
        let t = self.get()?;
        blocking(move || t.copy_thread(&source, &target).map(|n| n as f64)).await
    }

    /// Returns how many checkpoints were deleted.
    #[napi]
    pub async fn prune(&self, thread_ids: Vec<String>, keep_latest: bool) -> Result<f64> {
        let t = self.get()?;
        blocking(move || t.prune(&thread_ids, keep_latest).map(|n| n as f64)).await
    }

    /// Releases the store handle (the store closes once nothing else holds it).
    #[napi]
    pub fn close(&self) -> Result<()> {
        let mut g = self
            .inner
            .write()
            .map_err(|_| coded("internal", "threads lock poisoned by a panic"))?;
        *g = None;
        Ok(())
    }
}

fn put_checkpoint(
    t: &omium_core::threads::Threads,
    put: &PutCheckpointJs,
) -> omium_core::Result<()> {
    let values: Vec<NewValue<'_>> = put
        .values
        .iter()
        .map(|v| NewValue {
            channel: &v.channel,
            version: &v.version,
            value_type: &v.value_type,
            value: &v.value,
        })
        .collect();
    t.put(&PutCheckpoint {
        thread_id: &put.thread_id,
        ns: &put.ns,
        checkpoint_id: &put.checkpoint_id,
        parent_id: put.parent_id.as_deref(),
        checkpoint_type: &put.checkpoint_type,
        checkpoint: &put.checkpoint,
        metadata_type: &put.metadata_type,
        metadata: &put.metadata,
        fields: put.fields.clone(),
        run_id: put.run_id.as_deref(),
        channels: put.channels.clone(),
        values,
    })
}

/// `at`: thread id, namespace, checkpoint id, task id, task path.
fn put_task_writes(
    t: &omium_core::threads::Threads,
    at: &[String; 5],
    writes: &[WriteJs],
) -> omium_core::Result<()> {
    let writes: Vec<NewWrite<'_>> = writes
        .iter()
        .map(|w| NewWrite {
            idx: w.idx,
            channel: &w.channel,
            value_type: &w.value_type,
            value: &w.value,
        })
        .collect();
    let [thread_id, ns, checkpoint_id, task_id, task_path] = at;
    t.put_writes(thread_id, ns, checkpoint_id, task_id, task_path, &writes)
}
