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
    // Eight running sums, not one: one f32 sum must be added in order, which keeps the compiler
    // from using vector instructions; eight independent ones it can, and an exact scan of a
    // scope's vectors is that many times faster.
    const LANES: usize = 8;
    let len = a.len().min(b.len());
    let (a, b) = (&a[..len], &b[..len]);
    let (a_chunks, b_chunks) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = a_chunks.remainder().iter().zip(b_chunks.remainder()).map(|(x, y)| x * y).sum();
    let mut sums = [0.0f32; LANES];
    for (x, y) in a_chunks.zip(b_chunks) {
        for ((sum, x), y) in sums.iter_mut().zip(x).zip(y) {
            *sum += x * y;
        }
    }
    sums.iter().sum::<f32>() + tail
}

/// A memory's vectors: its whole fact's, and, for a fact of three sentences or more, each
/// passage's (see [`passages_of`]). One vector of a long fact averages what it says, so a
/// question about one part of it matches it weakly; a passage's vector matches that part.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MemoryVectors {
    pub fact: Vec<f32>,
    pub passages: Vec<Vec<f32>>,
}

impl MemoryVectors {
    /// Just the fact's vector (a fact with no passages).
    pub fn of_fact(fact: Vec<f32>) -> MemoryVectors {
        MemoryVectors { fact, passages: Vec::new() }
    }

    /// Every vector, the fact's first.
    pub fn all(&self) -> impl Iterator<Item = &[f32]> {
        std::iter::once(self.fact.as_slice()).chain(self.passages.iter().map(Vec::as_slice))
    }

    /// How similar the memory is to `query`: its best vector's cosine.
    pub fn similarity(&self, query: &[f32]) -> f32 {
        self.all().map(|vector| cosine(vector, query)).fold(f32::NEG_INFINITY, f32::max)
    }
}

/// How similar a memory whose vectors lie one after another in `flat` (the fact's first, each
/// `query.len()` long) is to `query`: its best vector's cosine. How stores that keep the
/// vectors as one run of numbers score them.
pub fn best_similarity(flat: &[f32], query: &[f32]) -> f32 {
    if query.is_empty() {
        return 0.0;
    }
    flat.chunks_exact(query.len()).map(|vector| cosine(vector, query)).fold(f32::NEG_INFINITY, f32::max)
}

/// A label is what a fact says before its first ": " when that is short ("Caroline: ...",
/// "Work: ..."): who is speaking or what the fact is about.
const MAX_LABEL_CHARS: usize = 40;
const MAX_LABEL_WORDS: usize = 4;

/// The passages of a fact of three sentences or more: each two adjacent sentences, after the
/// fact's label when it has one (a passage without its speaker or subject loses what the fact
/// is about). A fact of one or two sentences has none: its own vector is as fine-grained.
pub fn passages_of(fact: &str) -> Vec<String> {
    let (label, body) = match fact.split_once(": ") {
        Some((label, body))
            if label.chars().count() <= MAX_LABEL_CHARS && label.split_whitespace().count() <= MAX_LABEL_WORDS =>
        {
            (Some(label.trim()), body)
        }
        _ => (None, fact),
    };
    let sentences = sentences_of(body);
    if sentences.len() < 3 {
        return Vec::new();
    }
    sentences
        .windows(2)
        .map(|pair| match label {
            Some(label) => format!("{label}: {} {}", pair[0], pair[1]),
            None => format!("{} {}", pair[0], pair[1]),
        })
        .collect()
}

/// Sentences end at '.', '!' or '?' followed by white space.
fn sentences_of(text: &str) -> Vec<&str> {
    let mut sentences = Vec::new();
    let mut start = 0;
    let mut previous = ' ';
    for (at, character) in text.char_indices() {
        if character.is_whitespace() && matches!(previous, '.' | '!' | '?') {
            let sentence = text[start..at].trim();
            if !sentence.is_empty() {
                sentences.push(sentence);
            }
            start = at;
        }
        previous = character;
    }
    let last = text[start..].trim();
    if !last.is_empty() {
        sentences.push(last);
    }
    sentences
}

/// The vectors of each fact, in order, from one call to the model.
pub async fn embed_memories(embedder: &dyn Embedder, facts: &[String]) -> Result<Vec<MemoryVectors>> {
    let passages: Vec<Vec<String>> = facts.iter().map(|fact| passages_of(fact)).collect();
    let texts: Vec<String> = facts
        .iter()
        .zip(&passages)
        .flat_map(|(fact, passages)| std::iter::once(fact.clone()).chain(passages.iter().cloned()))
        .collect();
    let n_texts = texts.len();
    let mut vectors = embedder.embed(texts).await?.into_iter();
    if vectors.len() != n_texts {
        return Err(crate::Error::Embedding(format!(
            "the model returned {} vectors for {n_texts} texts",
            vectors.len()
        )));
    }
    Ok(passages
        .iter()
        .map(|passages| MemoryVectors {
            fact: vectors.next().unwrap_or_default(),
            passages: passages.iter().map(|_| vectors.next().unwrap_or_default()).collect(),
        })
        .collect())
}

/// The vectors of one fact.
pub async fn embed_memory(embedder: &dyn Embedder, fact: &str) -> Result<MemoryVectors> {
    let mut vectors = embed_memories(embedder, &[fact.to_owned()]).await?;
    vectors.pop().ok_or_else(|| crate::Error::Embedding("the model returned no vector".to_owned()))
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

    #[test]
    fn cosine_is_the_dot_product_at_any_length() {
        let a: Vec<f32> = (0..389).map(|n| ((n * 37 % 101) as f32 - 50.0) / 50.0).collect();
        let b: Vec<f32> = (0..389).map(|n| ((n * 53 % 97) as f32 - 48.0) / 48.0).collect();
        for len in [0, 1, 7, 8, 9, 16, 384, 389] {
            let exact: f64 = a[..len].iter().zip(&b[..len]).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
            let got = cosine(&a[..len], &b[..len]);
            assert!((f64::from(got) - exact).abs() < 1e-4, "length {len}: {got} against {exact}");
        }
        // Vectors of different lengths: the common prefix, as a zip would give.
        assert_eq!(cosine(&[1.0, 2.0, 3.0], &[4.0, 5.0]), 14.0);
    }

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
    fn a_long_fact_has_a_passage_for_each_two_adjacent_sentences_under_its_label() {
        let fact = "Caroline: I went to a support group yesterday. It was powerful! Did you go? I will again.";
        assert_eq!(
            passages_of(fact),
            [
                "Caroline: I went to a support group yesterday. It was powerful!",
                "Caroline: It was powerful! Did you go?",
                "Caroline: Did you go? I will again.",
            ]
        );
        // No label: a long text before the colon, or more than four words.
        assert_eq!(
            passages_of("The one thing she told me at length: a. b. c."),
            ["The one thing she told me at length: a. b.", "b. c."]
        );
        // Two sentences or fewer: the fact's own vector is as fine-grained.
        assert!(passages_of("Caroline: I went there. It was good.").is_empty());
        assert!(passages_of("User's name is Maria").is_empty());
        // A dot inside a word or number does not end a sentence.
        assert!(passages_of("User paid 3.50 at e.g.the shop. Then left. Fine").len() == 2);
    }

    #[test]
    fn a_memory_is_as_similar_as_its_best_vector() {
        let vectors = MemoryVectors { fact: vec![1.0, 0.0], passages: vec![vec![0.0, 1.0], vec![0.6, 0.8]] };
        assert_eq!(vectors.similarity(&[0.0, 1.0]), 1.0);
        assert_eq!(vectors.similarity(&[1.0, 0.0]), 1.0);
        let flat: Vec<f32> = vectors.all().flatten().copied().collect();
        assert_eq!(best_similarity(&flat, &[0.0, 1.0]), 1.0);
        assert!((best_similarity(&flat[..2], &[0.6, 0.8]) - 0.6).abs() < 1e-6);
    }

    #[test]
    fn a_zero_capacity_caches_nothing() {
        let cache = QueryVectors::new(0);
        cache.put("a", vector(1.0));
        assert!(cache.get("a").is_none());
    }
}
