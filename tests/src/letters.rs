//! [`Letters`]: a deterministic stand-in for an embedding model, shared by
//! the embedder tests of both backends.

use std::sync::atomic::{AtomicUsize, Ordering};

use reposmith::{BoxFuture, EmbedError, Embedder};

/// Letter counts (`a`..`z`, folded onto `dims` dimensions), counting its
/// calls; the text `"fail"` makes a call fail as an unavailable model would.
#[derive(Default)]
pub struct Letters {
    /// Calls so far.
    pub calls: AtomicUsize,
    /// Dimensions of every vector returned.
    pub dims: usize,
}

impl Letters {
    /// An embedder of `dims` dimensions.
    pub fn new(dims: usize) -> Letters {
        Letters {
            dims,
            ..Letters::default()
        }
    }

    /// Calls so far.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Embedder for Letters {
    fn embed<'a>(
        &'a self,
        texts: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Vec<f32>>, EmbedError>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            if texts.iter().any(|t| t == "fail") {
                return Err(EmbedError::new("model unavailable"));
            }
            Ok(texts
                .iter()
                .map(|t| {
                    let mut v = vec![0.0f32; self.dims];
                    for b in t.bytes().filter(u8::is_ascii_lowercase) {
                        v[usize::from(b - b'a') % self.dims] += 1.0;
                    }
                    v
                })
                .collect())
        })
    }

    fn max_batch(&self) -> usize {
        4
    }
}
