//! [`QueryVectors`]: the embeddings of search queries and questions, kept
//! in process so that a repeated query skips the model.
//!
//! The search cache in Redis is keyed by the rendered search, the query's
//! vector included, so it can only be consulted once the query is
//! embedded: without this cache a repeated search still paid a forward
//! pass, the most expensive step of a vector or hybrid search.
//!
//! **Why caching is safe.** A query's vector is a pure function of its
//! text and the model, and the model is fixed for the life of the process:
//! the embedder is chosen once when the service starts
//! ([`Service::start`](crate::app::Service::start)) and never swapped. A
//! new model means a new process, so no cached vector can outlive the
//! model that made it. The key is the exact text that is embedded (the
//! query after trimming), so two texts share a vector only when the model
//! would give them the same one.
//!
//! **Bounds.** At most `RAG_QUERY_CACHE_ENTRIES` entries (10,000 by
//! default: about 1.5 KiB of vector plus the text each, so some 20 MiB at
//! the default query length bound), each for at most
//! `RAG_QUERY_CACHE_TTL` (1 hour) after it was computed, which also limits
//! how long a query's text stays in memory. moka evicts by TinyLFU: a
//! query asked once does not push out one asked often.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use moka::sync::Cache;
use reposmith::{Embedder, Vector};

use super::error::ApiError;

/// Query embeddings, computed once per distinct text within the bounds.
#[derive(Clone)]
pub struct QueryVectors {
    embedder: Arc<dyn Embedder>,
    cache: Cache<String, Vector>,
    timeout: Duration,
}

impl std::fmt::Debug for QueryVectors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryVectors")
            .field("entries", &self.cache.entry_count())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl QueryVectors {
    /// A cache of up to `capacity` vectors, each kept at most `ttl`, over
    /// `embedder`, whose calls may take up to `timeout`.
    pub fn new(
        embedder: Arc<dyn Embedder>,
        capacity: u64,
        ttl: Duration,
        timeout: Duration,
    ) -> QueryVectors {
        let cache = Cache::builder()
            .max_capacity(capacity)
            .time_to_live(ttl)
            .build();
        QueryVectors {
            embedder,
            cache,
            timeout,
        }
    }

    /// The vector of `text`: from the cache, or from the model within the
    /// timeout (503 `unavailable` when it fails or does not answer). Two
    /// requests missing on the same text at once both call the model; the
    /// second insert replaces the first with an equal vector.
    pub async fn embed(&self, text: &str) -> Result<Vector, ApiError> {
        if let Some(vector) = self.cache.get(text) {
            return Ok(vector);
        }
        let vector = self.compute(text).await?;
        self.cache.insert(text.to_owned(), vector.clone());
        Ok(vector)
    }

    /// How many vectors are cached, once moka's pending evictions ran.
    pub fn len(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.entry_count()
    }

    /// True when no vector is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    async fn compute(&self, text: &str) -> Result<Vector, ApiError> {
        let texts = [text.to_owned()];
        let limit = self.timeout;
        let unavailable = |why: String| {
            tracing::warn!(%why, "query not embedded");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the embedding model did not answer; retry shortly",
            )
        };
        match tokio::time::timeout(limit, self.embedder.embed(&texts)).await {
            Ok(Ok(mut vectors)) if vectors.len() == 1 => Ok(Vector::from(vectors.remove(0))),
            Ok(Ok(vectors)) => Err(unavailable(format!("{} vectors for 1 text", vectors.len()))),
            Ok(Err(error)) => Err(unavailable(error.to_string())),
            Err(_) => Err(unavailable(format!("no answer within {limit:?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use reposmith::{BoxFuture, EmbedError};

    use super::*;

    /// Counts texts embedded; each vector holds the text's length.
    #[derive(Default)]
    struct Counting(AtomicUsize);

    impl Embedder for Counting {
        fn embed<'a>(
            &'a self,
            texts: &'a [String],
        ) -> BoxFuture<'a, Result<Vec<Vec<f32>>, EmbedError>> {
            self.0.fetch_add(texts.len(), Ordering::SeqCst);
            Box::pin(async move { Ok(texts.iter().map(|t| vec![t.len() as f32; 4]).collect()) })
        }
    }

    fn cache(capacity: u64) -> (Arc<Counting>, QueryVectors) {
        let embedder = Arc::new(Counting::default());
        let second = Duration::from_secs(1);
        let vectors = QueryVectors::new(embedder.clone(), capacity, 60 * second, second);
        (embedder, vectors)
    }

    #[tokio::test]
    async fn a_repeated_text_skips_the_model_and_the_bound_holds() {
        let (model, vectors) = cache(8);
        let first = vectors.embed("crash recovery").await.unwrap();
        let again = vectors.embed("crash recovery").await.unwrap();
        assert_eq!(first, again);
        assert_eq!(model.0.load(Ordering::SeqCst), 1);
        vectors.embed("crash recovery ").await.unwrap();
        assert_eq!(model.0.load(Ordering::SeqCst), 2, "another text embeds");
        for i in 0..200 {
            vectors.embed(&format!("query {i}")).await.unwrap();
        }
        assert!(vectors.len() <= 8, "{} entries", vectors.len());
        assert_eq!(model.0.load(Ordering::SeqCst), 202);
    }

    #[tokio::test]
    async fn entries_expire_after_their_time() {
        let embedder = Arc::new(Counting::default());
        let vectors = QueryVectors::new(
            embedder.clone(),
            8,
            Duration::from_millis(50),
            Duration::from_secs(1),
        );
        vectors.embed("vacuum").await.unwrap();
        tokio::time::sleep(Duration::from_millis(120)).await;
        vectors.embed("vacuum").await.unwrap();
        assert_eq!(embedder.0.load(Ordering::SeqCst), 2);
    }
}
