//! Turning text into vectors.

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
