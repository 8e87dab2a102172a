//! [`Capabilities`]: what a connected backend can do, as flags generic code
//! can test before it relies on a feature.
//!
//! The flags are backend-neutral; each backend fills them from what it is
//! and, where the server decides, from what it probed at connect (a MongoDB
//! standalone has no transactions, a MongoDB without a search process has no
//! approximate vector index).

/// Features that differ between backends or deployments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// Units of work (multi-statement transactions) can begin.
    pub transactions: bool,
    /// A unit of work can open nested units that roll back alone (savepoints).
    pub nested_units: bool,
    /// A unit of work can run at a chosen isolation level.
    pub isolation_levels: bool,
    /// Vector searches can use an approximate index (HNSW, IVFFlat,
    /// `$vectorSearch`); without it they are computed exactly.
    pub vector_index: bool,
    /// Full-text and hybrid (text + vector) searches run.
    pub full_text_search: bool,
    /// Units of work can record jobs and events in a transactional outbox
    /// ([`UnitOfWork::enqueue`](crate::UnitOfWork::enqueue)).
    pub outbox: bool,
}

impl Capabilities {
    /// No feature at all; backends start from here and switch on what they have.
    pub const NONE: Capabilities = Capabilities {
        transactions: false,
        nested_units: false,
        isolation_levels: false,
        vector_index: false,
        full_text_search: false,
        outbox: false,
    };

    /// Sets [`transactions`](Self::transactions).
    pub const fn with_transactions(mut self, on: bool) -> Self {
        self.transactions = on;
        self
    }

    /// Sets [`nested_units`](Self::nested_units).
    pub const fn with_nested_units(mut self, on: bool) -> Self {
        self.nested_units = on;
        self
    }

    /// Sets [`isolation_levels`](Self::isolation_levels).
    pub const fn with_isolation_levels(mut self, on: bool) -> Self {
        self.isolation_levels = on;
        self
    }

    /// Sets [`vector_index`](Self::vector_index).
    pub const fn with_vector_index(mut self, on: bool) -> Self {
        self.vector_index = on;
        self
    }

    /// Sets [`outbox`](Self::outbox).
    pub const fn with_outbox(mut self, on: bool) -> Self {
        self.outbox = on;
        self
    }

    /// Sets [`full_text_search`](Self::full_text_search).
    pub const fn with_full_text_search(mut self, on: bool) -> Self {
        self.full_text_search = on;
        self
    }
}
