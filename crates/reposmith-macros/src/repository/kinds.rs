//! The closed vocabularies of `#[repo(...)]`: backends, read preferences,
//! distances, vector index kinds, and the pgvector kind a field's type selects. The attribute
//! values are parsed by darling, which rejects any other string at the
//! value's span with a "did you mean" hint, so the rules in `check` compare
//! variants, never strings. Each vocabulary maps here, and only here, to
//! the spelling users write, the `reposmith_core` variant the generated code
//! names, and the pgvector facts the rules need.

use darling::FromMeta;

/// `backend = "postgres" | "mongo" | "both"`: which backends store the entity.
#[derive(FromMeta, Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum BackendChoice {
    #[darling(rename = "both")]
    Both,
    #[darling(rename = "postgres")]
    Postgres,
    #[darling(rename = "mongo")]
    Mongo,
}

impl BackendChoice {
    /// Whether PostgreSQL stores the entity.
    pub(crate) fn postgres(self) -> bool {
        self != BackendChoice::Mongo
    }

    /// Whether MongoDB stores the entity.
    pub(crate) fn mongo(self) -> bool {
        self != BackendChoice::Postgres
    }

    /// The `Backends` variant.
    pub(crate) fn variant(self) -> &'static str {
        match self {
            BackendChoice::Both => "Both",
            BackendChoice::Postgres => "Postgres",
            BackendChoice::Mongo => "Mongo",
        }
    }
}

/// `reads = "replica" | "primary"`: where the PostgreSQL backend sends the
/// entity's pool reads when it has read replicas. Parsed by `attr` rather
/// than darling, so an unknown value gets a message naming both values.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Reads {
    Replica,
    Primary,
}

impl Reads {
    /// The value spelled `name` in the attribute, if any.
    pub(crate) fn from_name(name: &str) -> Option<Self> {
        match name {
            "replica" => Some(Reads::Replica),
            "primary" => Some(Reads::Primary),
            _ => None,
        }
    }

    /// The `ReadPreference` variant.
    pub(crate) fn variant(self) -> &'static str {
        match self {
            Reads::Replica => "Replica",
            Reads::Primary => "Primary",
        }
    }
}

/// The pgvector type of a vector field, read from its Rust type (there is
/// no attribute for it: the type decides).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum VectorKind {
    Dense,
    Half,
    Sparse,
    Bit,
}

impl VectorKind {
    /// The kind of a field spelled with this type name (`HalfVector` → `Half`).
    pub(crate) fn from_type_name(name: &str) -> Option<Self> {
        match name {
            "Vector" => Some(VectorKind::Dense),
            "HalfVector" => Some(VectorKind::Half),
            "SparseVector" => Some(VectorKind::Sparse),
            "Bit" => Some(VectorKind::Bit),
            _ => None,
        }
    }

    /// The Rust type, as messages quote it.
    pub(crate) fn rust_type(self) -> &'static str {
        match self {
            VectorKind::Dense => "`Vector`",
            VectorKind::Half => "`HalfVector`",
            VectorKind::Sparse => "`SparseVector`",
            VectorKind::Bit => "`Bit`",
        }
    }

    /// The Postgres type name; mirrors `reposmith_core::VectorKind::sql_type`.
    pub(crate) fn sql_type(self) -> &'static str {
        match self {
            VectorKind::Dense => "vector",
            VectorKind::Half => "halfvec",
            VectorKind::Sparse => "sparsevec",
            VectorKind::Bit => "bit",
        }
    }

    /// The `VectorKind` variant.
    pub(crate) fn variant(self) -> &'static str {
        match self {
            VectorKind::Dense => "Dense",
            VectorKind::Half => "Half",
            VectorKind::Sparse => "Sparse",
            VectorKind::Bit => "Bit",
        }
    }

    /// The most dimensions pgvector stores: 16,000 floats; bits and sparse
    /// vectors are bounded only by the `u32`.
    pub(crate) fn max_stored_dims(self) -> u32 {
        match self {
            VectorKind::Dense | VectorKind::Half => 16_000,
            VectorKind::Sparse | VectorKind::Bit => u32::MAX,
        }
    }

    /// The most dimensions pgvector indexes (what fits a page); mirrors
    /// `reposmith_core::VectorKind::max_indexed_dims`.
    pub(crate) fn max_indexed_dims(self) -> Option<u32> {
        match self {
            VectorKind::Dense => Some(2_000),
            VectorKind::Half => Some(4_000),
            VectorKind::Bit => Some(64_000),
            VectorKind::Sparse => None,
        }
    }

    /// The distance used when the attribute names none.
    pub(crate) fn default_distance(self) -> Distance {
        match self {
            VectorKind::Bit => Distance::Hamming,
            _ => Distance::Cosine,
        }
    }

    /// Whether `distance` is defined on this kind: hamming and jaccard on
    /// bits only, the others on floats only.
    pub(crate) fn supports(self, distance: Distance) -> bool {
        distance.bits_only() == (self == VectorKind::Bit)
    }

    /// Whether an embedder (which returns floats) can fill it.
    pub(crate) fn embeddable(self) -> bool {
        matches!(self, VectorKind::Dense | VectorKind::Half)
    }
}

/// `distance = ".."`: how two vectors are compared.
#[derive(FromMeta, Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Distance {
    #[darling(rename = "cosine")]
    Cosine,
    #[darling(rename = "l2")]
    L2,
    #[darling(rename = "inner_product")]
    InnerProduct,
    #[darling(rename = "l1")]
    L1,
    #[darling(rename = "hamming")]
    Hamming,
    #[darling(rename = "jaccard")]
    Jaccard,
}

impl Distance {
    /// The attribute spelling.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Distance::Cosine => "cosine",
            Distance::L2 => "l2",
            Distance::InnerProduct => "inner_product",
            Distance::L1 => "l1",
            Distance::Hamming => "hamming",
            Distance::Jaccard => "jaccard",
        }
    }

    /// The `Distance` variant.
    pub(crate) fn variant(self) -> &'static str {
        match self {
            Distance::Cosine => "Cosine",
            Distance::L2 => "L2",
            Distance::InnerProduct => "InnerProduct",
            Distance::L1 => "L1",
            Distance::Hamming => "Hamming",
            Distance::Jaccard => "Jaccard",
        }
    }

    /// Defined on `Bit` vectors only.
    fn bits_only(self) -> bool {
        matches!(self, Distance::Hamming | Distance::Jaccard)
    }

    /// Whether pgvector has an IVFFlat operator class for it (l2, ip,
    /// cosine; hamming for bits).
    pub(crate) fn ivfflat(self) -> bool {
        !matches!(self, Distance::L1 | Distance::Jaccard)
    }
}

/// `index = ".."`: the approximate-nearest-neighbour index of a vector field.
#[derive(FromMeta, Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum IndexKind {
    #[darling(rename = "hnsw")]
    Hnsw,
    #[darling(rename = "ivfflat")]
    IvfFlat,
    /// Exact search only.
    #[darling(rename = "none")]
    None,
}

impl IndexKind {
    /// The attribute spelling.
    pub(crate) fn name(self) -> &'static str {
        match self {
            IndexKind::Hnsw => "hnsw",
            IndexKind::IvfFlat => "ivfflat",
            IndexKind::None => "none",
        }
    }
}
