//! Test aids (feature `testing`): a deterministic [`TestEmbedder`] and
//! seeded [`VectorFixture`]s with exact neighbours. The clock tests fix
//! the time with, [`Clock`](crate::Clock), is in every build.
//!
//! Nothing here downloads a model or reads the network; every value is a
//! pure function of its inputs, the same on every platform, so tests may
//! assert on it.

mod embedder;
mod fixture;
mod rng;

pub use embedder::{MAX_TEST_DIMS, TestEmbedder};
pub use fixture::{FixtureSpec, Neighbour, VectorFixture, distance};
pub use rng::{Clusters, SPREAD, SplitMix};
