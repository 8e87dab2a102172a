//! Tenant handles on MongoDB: [`MongoBackend::for_tenant`].
//!
//! A tenant handle is a `MongoBackend` (same client) carrying a
//! [`Tenant`]: repositories taken from it, from its units of work and from
//! its retried transactions add the tenant to every command's filter
//! (rendered from the same row scope as soft delete, the value a BSON
//! operand) and stamp it on every document written. MongoDB has no
//! row-level security: this filter is the only guard, so code that reaches
//! the collections through the driver directly sees every tenant.
//!
//! A repository of a `#[repo(tenant)]` entity taken without a tenant
//! refuses every operation with `Error::InvalidInput` before anything is sent.

use reposmith_core::{IntoTenant, Result, Tenant};

use crate::MongoBackend;

impl MongoBackend {
    /// This backend for `tenant`: repositories, units of work and retried
    /// transactions restricted to the tenant's documents of `#[repo(tenant)]`
    /// entities (entities without a tenant field are unaffected). The tenant
    /// is checked first (see [`Tenant`]).
    pub fn for_tenant(&self, tenant: impl IntoTenant) -> Result<MongoBackend> {
        let mut handle = self.clone();
        handle.tenant = Some(tenant.into_tenant()?);
        Ok(handle)
    }

    /// The tenant of this handle, if it is one ([`MongoBackend::for_tenant`]).
    pub fn tenant(&self) -> Option<&Tenant> {
        self.tenant.as_ref()
    }
}
