//! Turning text into vectors.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::Result;

/// An embedding model. Vectors are L2-normalised, so cosine similarity is a dot product.
#[async_trait]
pub trait Embedder: Send + Sync + 'static {
    /// Identifies the model and its settings; vectors of different ids must never be mixed.
    fn model_id(&self) -> &str;
    fn dimension(&self) -> usize;
    /// One vector per text, in order.
    async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>>;
}

/// Dot product of two normalised vectors: their cosine similarity.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The vectors of recent search queries, least recently used out. An agent asks the same
/// questions again (the same preload query each turn, a tool's fixed queries, retries), and
/// embedding the query is most of a search's time on a CPU. Vectors depend only on the text and
/// the one model a service embeds with, so a cached vector is never stale.
pub struct QueryVectors {
    capacity: usize,
    entries: Mutex<LruEntries>,
}

#[derive(Default)]
struct LruEntries {
    by_text: HashMap<String, (Arc<[f32]>, u64)>,
    clock: u64,
}

impl QueryVectors {
    /// Holds at most `capacity` vectors; 0 caches nothing.
    pub fn new(capacity: usize) -> QueryVectors {
        QueryVectors { capacity, entries: Mutex::new(LruEntries::default()) }
    }

    pub fn get(&self, text: &str) -> Option<Arc<[f32]>> {
        let mut entries = self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        entries.clock += 1;
        let now = entries.clock;
        let (vector, used) = entries.by_text.get_mut(text)?;
        *used = now;
        Some(vector.clone())
    }

    pub fn put(&self, text: &str, vector: Arc<[f32]>) {
        if self.capacity == 0 {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        entries.clock += 1;
        let now = entries.clock;
        if entries.by_text.len() >= self.capacity && !entries.by_text.contains_key(text) {
            // A scan of at most `capacity` entries, only when a new text arrives at a full cache:
            // cheap beside the embedding it saves.
            let oldest = entries.by_text.iter().min_by_key(|(_, (_, used))| *used).map(|(text, _)| text.clone());
            if let Some(oldest) = oldest {
                entries.by_text.remove(&oldest);
            }
        }
        entries.by_text.insert(text.to_owned(), (vector, now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vector(value: f32) -> Arc<[f32]> {
        Arc::from(vec![value])
    }

    #[test]
    fn keeps_the_most_recently_used_vectors() {
        let cache = QueryVectors::new(2);
        cache.put("a", vector(1.0));
        cache.put("b", vector(2.0));
        assert_eq!(cache.get("a").as_deref(), Some(&[1.0][..]));
        // "b" is now the least recently used.
        cache.put("c", vector(3.0));
        assert!(cache.get("b").is_none());
        assert_eq!(cache.get("a").as_deref(), Some(&[1.0][..]));
        assert_eq!(cache.get("c").as_deref(), Some(&[3.0][..]));
        cache.put("c", vector(4.0));
        assert_eq!(cache.get("c").as_deref(), Some(&[4.0][..]), "a put replaces");
        assert_eq!(cache.get("a").as_deref(), Some(&[1.0][..]), "replacing evicts nothing");
    }

    #[test]
    fn a_zero_capacity_caches_nothing() {
        let cache = QueryVectors::new(0);
        cache.put("a", vector(1.0));
        assert!(cache.get("a").is_none());
    }
}
