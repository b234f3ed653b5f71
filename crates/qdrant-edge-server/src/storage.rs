//! Collections on disk: one qdrant-edge shard per collection under `storage/<name>/`, with
//! `collection.json` beside the engine's files recording what the collection was created with.
//!
//! The engine is synchronous and its `flush` (also run by `Drop`) panics when another thread
//! holds the shard's internal locks, so each shard sits behind a `RwLock`: reads, updates and
//! optimizations share it, flushes and closing take it alone. Every engine call runs on the
//! blocking pool.
//!
//! Optimizations run as Qdrant's do: `EdgeShard::optimize` wraps the segments it rebuilds in
//! proxy segments, builds the new (say, HNSW-indexed) segment from them while reads go on through
//! the proxies and updates land in a copy-on-write segment, and takes the engine's segment lock
//! exclusively only for the short swaps at the start and the end. So searches and updates keep
//! being served during an optimization. It cannot be cancelled: closing a collection (delete,
//! shutdown, drop) waits for its running optimization to finish.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::Write;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use qdrant_edge::{
    CountRequest, Distance, EdgeConfig, EdgeOptimizersConfig, EdgeShard, EdgeVectorParams, HnswIndexConfig,
    PayloadSchemaType, UpdateOperation,
};
use serde::{Deserialize, Serialize};

use crate::error::{EdgeError, EdgeResult};

const META_FILE: &str = "collection.json";

/// What a collection was created with, persisted as `collection.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct CollectionMeta {
    pub(crate) size: u64,
    pub(crate) distance: Distance,
    pub(crate) hnsw: HnswIndexConfig,
    /// The optimizer settings given at creation; unset ones take the engine's defaults, which
    /// are Qdrant's (an `indexing_threshold` of 10,000 KB).
    #[serde(default)]
    pub(crate) optimizers: EdgeOptimizersConfig,
    /// Payload indexes by field name, kept in step with the engine's own indexes.
    #[serde(default)]
    pub(crate) payload_indexes: BTreeMap<String, PayloadSchemaType>,
    /// Seconds since the Unix epoch.
    #[serde(default)]
    pub(crate) created_at: i64,
}

impl CollectionMeta {
    fn edge_config(&self) -> EdgeConfig {
        let size = usize::try_from(self.size).unwrap_or(usize::MAX);
        EdgeConfig::builder()
            .vector("", EdgeVectorParams::builder(size, self.distance).build())
            .hnsw_config(self.hnsw)
            .optimizers(self.optimizers.clone())
            .build()
    }
}

/// One collection: its engine shard, taken out (`None`) once the collection is deleted or the
/// server shuts down, so a request still holding the `Arc` fails cleanly.
pub(crate) struct Collection {
    pub(crate) name: String,
    dir: PathBuf,
    meta: RwLock<CollectionMeta>,
    shard: RwLock<Option<EdgeShard>>,
    n_operations: AtomicU64,
    /// `n_operations` at the last flush.
    n_flushed: AtomicU64,
    /// `n_operations` when the last optimization started; `u64::MAX` for a collection loaded
    /// from disk until its first one.
    n_optimized: AtomicU64,
    /// Whether an optimization is running now.
    optimizing: AtomicBool,
    /// Why the last optimization failed; `None` once one succeeds.
    optimizer_error: Mutex<Option<String>>,
    /// Held across an update and the metadata change that goes with it, so concurrent field
    /// index changes record their metadata in the order the engine applied them.
    meta_updates: Mutex<()>,
}

/// What `Get` reports of a collection's optimizer.
pub(crate) struct OptimizerState {
    pub(crate) running: bool,
    pub(crate) error: Option<String>,
}

/// Which collections a maintenance pass optimizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Optimize {
    /// Those changed since their last optimization, as the periodic pass does.
    Changed,
    /// All of them.
    All,
}

impl Collection {
    /// `loaded`: the shard comes from disk, so the first maintenance pass optimizes it as Qdrant
    /// does on start; a new, empty one has nothing to optimize.
    fn new(name: String, dir: PathBuf, meta: CollectionMeta, shard: EdgeShard, loaded: bool) -> Collection {
        Collection {
            name,
            dir,
            meta: RwLock::new(meta),
            shard: RwLock::new(Some(shard)),
            n_operations: AtomicU64::new(0),
            n_flushed: AtomicU64::new(0),
            n_optimized: AtomicU64::new(if loaded { u64::MAX } else { 0 }),
            optimizing: AtomicBool::new(false),
            optimizer_error: Mutex::new(None),
            meta_updates: Mutex::new(()),
        }
    }

    pub(crate) fn meta(&self) -> CollectionMeta {
        self.meta.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Runs a read-only engine call; concurrent reads share the shard.
    pub(crate) async fn read<T, F>(self: &Arc<Self>, f: F) -> EdgeResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&EdgeShard, &CollectionMeta) -> EdgeResult<T> + Send + 'static,
    {
        let collection = Arc::clone(self);
        blocking(move || {
            let guard = collection.shard.read().unwrap_or_else(PoisonError::into_inner);
            let shard = guard.as_ref().ok_or_else(|| EdgeError::collection_not_found(&collection.name))?;
            f(shard, &collection.meta())
        })
        .await
    }

    pub(crate) fn optimizer_state(&self) -> OptimizerState {
        OptimizerState {
            running: self.optimizing.load(Ordering::Relaxed),
            error: self.optimizer_error.lock().unwrap_or_else(PoisonError::into_inner).clone(),
        }
    }

    /// Applies one update and returns the operation's number, counted from 0 each time the
    /// server starts. Updates share the shard with reads and optimizations: the engine applies
    /// them one at a time under its WAL lock.
    pub(crate) async fn update(self: &Arc<Self>, operation: UpdateOperation) -> EdgeResult<u64> {
        let collection = Arc::clone(self);
        blocking(move || {
            let guard = collection.shard.read().unwrap_or_else(PoisonError::into_inner);
            let shard = guard.as_ref().ok_or_else(|| EdgeError::collection_not_found(&collection.name))?;
            // Counted even when it fails: the engine may have applied part of it.
            let applied = shard.update(operation);
            let operation_id = collection.n_operations.fetch_add(1, Ordering::Relaxed);
            applied?;
            Ok(operation_id)
        })
        .await
    }

    /// Applies an update and then changes the recorded metadata, one such pair at a time.
    pub(crate) async fn update_with_meta(
        self: &Arc<Self>,
        operation: UpdateOperation,
        change: impl FnOnce(&mut CollectionMeta) + Send + 'static,
    ) -> EdgeResult<u64> {
        let collection = Arc::clone(self);
        blocking(move || {
            let _meta_update = collection.meta_updates.lock().unwrap_or_else(PoisonError::into_inner);
            let guard = collection.shard.read().unwrap_or_else(PoisonError::into_inner);
            let shard = guard.as_ref().ok_or_else(|| EdgeError::collection_not_found(&collection.name))?;
            let applied = shard.update(operation);
            let operation_id = collection.n_operations.fetch_add(1, Ordering::Relaxed);
            applied?;
            let mut meta = collection.meta.write().unwrap_or_else(PoisonError::into_inner);
            change(&mut meta);
            write_meta(&collection.dir, &meta)?;
            Ok(operation_id)
        })
        .await
    }

    /// Flushes the shard to disk if it changed since the last flush. The engine does not replay
    /// its WAL when it loads a shard, so what is not flushed is lost if the process dies.
    fn flush_if_changed(&self) {
        let n_operations = self.n_operations.load(Ordering::Relaxed);
        if self.n_flushed.load(Ordering::Relaxed) == n_operations {
            return;
        }
        let guard = self.shard.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(shard) = guard.as_ref() {
            // The engine panics when a flush fails; that must not end the maintenance pass.
            if catch_unwind(AssertUnwindSafe(|| shard.flush())).is_ok() {
                self.n_flushed.store(n_operations, Ordering::Relaxed);
            } else {
                eprintln!("qdrant-edge-server: flushing collection `{}` failed", self.name);
            }
        }
    }

    /// Runs the engine's optimizers (merge, indexing, vacuum, config mismatch) until none has
    /// anything left to do, then flushes what they changed. Holds the shard shared, so requests
    /// go on meanwhile; see the module docs. Failures are logged and reported by `Get`.
    fn optimize(&self, which: Optimize) {
        let n_operations = self.n_operations.load(Ordering::Relaxed);
        if which == Optimize::Changed && self.n_optimized.load(Ordering::Relaxed) == n_operations {
            return;
        }
        let optimized = {
            let guard = self.shard.read().unwrap_or_else(PoisonError::into_inner);
            let Some(shard) = guard.as_ref() else {
                return;
            };
            self.optimizing.store(true, Ordering::Relaxed);
            let optimized = catch_unwind(AssertUnwindSafe(|| shard.optimize()));
            self.optimizing.store(false, Ordering::Relaxed);
            optimized
        };
        self.n_optimized.store(n_operations, Ordering::Relaxed);
        let error = match optimized {
            Ok(Ok(changed)) => {
                if changed {
                    // The new segments are on disk; what changed in the old ones meanwhile
                    // (say, points deleted during the optimization) is flushed now.
                    self.n_flushed.store(u64::MAX, Ordering::Relaxed);
                    self.flush_if_changed();
                }
                None
            }
            Ok(Err(err)) => Some(err.to_string()),
            Err(_) => Some("the optimizer panicked".to_owned()),
        };
        if let Some(error) = &error {
            eprintln!("qdrant-edge-server: optimizing collection `{}` failed: {error}", self.name);
        }
        *self.optimizer_error.lock().unwrap_or_else(PoisonError::into_inner) = error;
    }

    /// Takes the shard out and drops it, which flushes it to disk. Later requests see NotFound.
    fn close(&self) {
        let shard = self.shard.write().unwrap_or_else(PoisonError::into_inner).take();
        // The engine flushes the WAL and every segment when the shard is dropped, and panics if
        // that fails (say, its directory was removed); that must not unwind into our caller.
        let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(shard)));
        if dropped.is_err() {
            eprintln!("qdrant-edge-server: flushing collection `{}` on close failed", self.name);
        }
    }
}

impl Drop for Collection {
    /// A collection dropped without `close` (say, with its runtime) still goes through it, so
    /// a failing flush never panics out of a destructor.
    fn drop(&mut self) {
        self.close();
    }
}

/// All collections of one storage directory.
pub(crate) struct Catalog {
    root: PathBuf,
    collections: RwLock<HashMap<String, Arc<Collection>>>,
    /// Serialises create, delete and shutdown, which touch the directory tree.
    ddl: tokio::sync::Mutex<()>,
    /// Serialises maintenance passes. A flush waiting for a shard behind a running optimization
    /// would hold up every request to that shard until the optimization ends. Taken on the
    /// blocking thread, so an aborted pass still holds it until its engine work is done.
    maintenance: Mutex<()>,
}

impl Catalog {
    /// Opens `root`, creating it if needed, and loads every collection found there.
    pub(crate) fn open(root: &Path) -> anyhow::Result<Catalog> {
        use anyhow::Context;

        fs::create_dir_all(root).with_context(|| format!("creating storage directory {}", root.display()))?;
        let mut collections = HashMap::new();
        for entry in fs::read_dir(root).with_context(|| format!("reading storage directory {}", root.display()))? {
            let dir = entry?.path();
            let Some(name) = dir.file_name().and_then(|name| name.to_str()) else {
                continue;
            };
            if !dir.is_dir() || validate_name(name).is_err() || !dir.join(META_FILE).exists() {
                continue;
            }
            let name = name.to_owned();
            let meta: CollectionMeta = serde_json::from_slice(
                &fs::read(dir.join(META_FILE)).with_context(|| format!("reading {}", dir.join(META_FILE).display()))?,
            )
            .with_context(|| format!("parsing {}", dir.join(META_FILE).display()))?;
            let shard = EdgeShard::load(&dir, Some(meta.edge_config()))
                .map_err(|err| anyhow::anyhow!("loading collection `{name}`: {err}"))?;
            collections.insert(name.clone(), Arc::new(Collection::new(name, dir, meta, shard, true)));
        }
        Ok(Catalog {
            root: root.to_owned(),
            collections: RwLock::new(collections),
            ddl: tokio::sync::Mutex::new(()),
            maintenance: Mutex::new(()),
        })
    }

    pub(crate) fn get(&self, name: &str) -> EdgeResult<Arc<Collection>> {
        self.collections
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
            .ok_or_else(|| EdgeError::collection_not_found(name))
    }

    pub(crate) fn exists(&self, name: &str) -> bool {
        self.collections.read().unwrap_or_else(PoisonError::into_inner).contains_key(name)
    }

    pub(crate) fn names(&self) -> Vec<String> {
        let mut names: Vec<String> =
            self.collections.read().unwrap_or_else(PoisonError::into_inner).keys().cloned().collect();
        names.sort();
        names
    }

    pub(crate) async fn create(&self, name: &str, meta: CollectionMeta) -> EdgeResult<()> {
        validate_name(name)?;
        let _ddl = self.ddl.lock().await;
        if self.exists(name) {
            return Err(EdgeError::bad_input(format!("Collection `{name}` already exists!")));
        }
        let dir = self.root.join(name);
        if dir.exists() {
            return Err(EdgeError::internal(format!(
                "the storage directory {} exists but holds no loadable collection",
                dir.display()
            )));
        }
        let shard_dir = dir.clone();
        let shard_meta = meta.clone();
        let shard = blocking(move || {
            fs::create_dir_all(&shard_dir)
                .map_err(|err| EdgeError::internal(format!("creating {}: {err}", shard_dir.display())))?;
            let created =
                EdgeShard::new(&shard_dir, shard_meta.edge_config()).map_err(EdgeError::from).and_then(|shard| {
                    // The metadata file is written last: a directory without it is not loaded.
                    write_meta(&shard_dir, &shard_meta)?;
                    Ok(shard)
                });
            if created.is_err() {
                let _ = fs::remove_dir_all(&shard_dir);
            }
            created
        })
        .await?;
        let collection = Arc::new(Collection::new(name.to_owned(), dir, meta, shard, false));
        self.collections.write().unwrap_or_else(PoisonError::into_inner).insert(name.to_owned(), collection);
        Ok(())
    }

    /// Deletes a collection and its files; `false` if there was none of that name.
    pub(crate) async fn delete(&self, name: &str) -> EdgeResult<bool> {
        validate_name(name)?;
        let _ddl = self.ddl.lock().await;
        let removed = self.collections.write().unwrap_or_else(PoisonError::into_inner).remove(name);
        let Some(collection) = removed else {
            return Ok(false);
        };
        blocking(move || {
            collection.close();
            fs::remove_dir_all(&collection.dir)
                .map_err(|err| EdgeError::internal(format!("removing {}: {err}", collection.dir.display())))
        })
        .await?;
        Ok(true)
    }

    /// One maintenance pass: flushes every collection changed since its last flush, as Qdrant
    /// does every `flush_interval_sec`, then optimizes `which` collections, as Qdrant's
    /// optimizer does in the background. Waits for a pass already running.
    ///
    /// # Cancel safety
    ///
    /// The pass runs on the blocking pool and cannot be stopped: dropping the future leaves it
    /// running to the end, still holding the maintenance lock.
    pub(crate) async fn maintain(self: &Arc<Self>, which: Optimize) {
        let catalog = Arc::clone(self);
        let maintained = blocking(move || {
            let _pass = catalog.maintenance.lock().unwrap_or_else(PoisonError::into_inner);
            let collections: Vec<Arc<Collection>> =
                catalog.collections.read().unwrap_or_else(PoisonError::into_inner).values().cloned().collect();
            for collection in &collections {
                collection.flush_if_changed();
            }
            for collection in &collections {
                collection.optimize(which);
            }
            Ok(())
        })
        .await;
        if let Err(err) = maintained {
            eprintln!("qdrant-edge-server: maintaining collections failed: {err}");
        }
    }

    /// Flushes and releases every collection; the catalog is empty afterwards.
    pub(crate) async fn close_all(self: &Arc<Self>) {
        let _ddl = self.ddl.lock().await;
        let catalog = Arc::clone(self);
        let closed = blocking(move || {
            catalog.close_all_now();
            Ok(())
        })
        .await;
        if let Err(err) = closed {
            eprintln!("qdrant-edge-server: closing collections failed: {err}");
        }
    }

    /// `close_all` on the calling thread, for `Drop`: it blocks while requests finish their
    /// engine calls.
    pub(crate) fn close_all_now(&self) {
        let collections: Vec<Arc<Collection>> = self
            .collections
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .drain()
            .map(|(_, collection)| collection)
            .collect();
        for collection in &collections {
            collection.close();
        }
    }
}

/// Counts every point of the shard, exactly.
pub(crate) fn count_points(shard: &EdgeShard) -> EdgeResult<u64> {
    let n_points = shard.count(CountRequest { filter: None, exact: true })?;
    Ok(n_points as u64)
}

/// Rejects names that are not a single, plain directory name.
pub(crate) fn validate_name(name: &str) -> EdgeResult<()> {
    let problem = if name.is_empty() {
        Some("it is empty")
    } else if name.len() > 255 {
        Some("it is longer than 255 bytes")
    } else if name.contains(['/', '\\', '\0']) {
        Some("it contains a path separator or a NUL byte")
    } else if name.contains("..") || name == "." {
        Some("it contains `..` or is `.`")
    } else {
        None
    };
    match problem {
        Some(problem) => Err(EdgeError::bad_input(format!("collection name `{name}` is invalid: {problem}"))),
        None => Ok(()),
    }
}

fn write_meta(dir: &Path, meta: &CollectionMeta) -> EdgeResult<()> {
    let path = dir.join(META_FILE);
    let tmp_path = dir.join(format!("{META_FILE}.tmp"));
    let write = || -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(meta)?;
        let mut file = fs::File::create(&tmp_path)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        fs::rename(&tmp_path, &path)
    };
    write().map_err(|err| EdgeError::internal(format!("writing {}: {err}", path.display())))
}

/// Runs engine work on the blocking pool; a panic there becomes an internal error.
pub(crate) async fn blocking<T, F>(f: F) -> EdgeResult<T>
where
    T: Send + 'static,
    F: FnOnce() -> EdgeResult<T> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result,
        Err(err) => Err(EdgeError::internal(format!("engine task failed: {err}"))),
    }
}
