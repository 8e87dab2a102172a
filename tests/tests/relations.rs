//! Relations (`#[repo(references(..))]`) against the real servers: the
//! PostgreSQL foreign keys and their typed errors, the on-delete actions,
//! and loading children and parents of a page in one query per relation on
//! both backends (the bodies in `loading` are written once against
//! `Repository` and run on each).

#[path = "relations/entities.rs"]
pub(crate) mod entities;
#[path = "relations/loading.rs"]
mod loading;
#[path = "relations/mongo.rs"]
mod mongo;
#[path = "relations/pg.rs"]
mod pg;
