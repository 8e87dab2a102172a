//! Tenant handles on PostgreSQL: [`PgBackend::for_tenant`].
//!
//! A tenant handle is a `PgBackend` (same pool, same cache) that carries a
//! [`Tenant`]. Every repository taken from it, from a unit of work it
//! begins (nested units share their parent's transaction, so they inherit
//! it) or from a retried `transaction`, has the tenant in its row scope:
//! the fixed statements and every filter compare the `#[repo(tenant)]`
//! column with the tenant as a bound parameter, and every write stamps it
//! (see `reposmith_core::tenant` for the write rule). A unit of work keeps
//! the tenant of the handle it began on; there is no API to change it.
//!
//! A repository of a tenant-scoped entity taken from a handle *without* a
//! tenant (`PgBackend::repo`, a unit begun on it) refuses every operation
//! with `Error::InvalidInput` before anything is sent.

use reposmith_core::{IntoTenant, Result, Tenant};

use crate::PgBackend;

impl PgBackend {
    /// This backend for `tenant`: repositories, units of work and retried
    /// transactions restricted to the tenant's rows of `#[repo(tenant)]`
    /// entities (entities without a tenant field are shared and unaffected).
    /// The tenant is checked first: non-empty, at most
    /// [`MAX_TENANT_LEN`](reposmith_core::tenant::MAX_TENANT_LEN) bytes, no
    /// NUL or control character, not the nil UUID or 0.
    ///
    /// ```rust,ignore
    /// let acme = backend.for_tenant("acme")?;
    /// let passages = acme.repo::<Passage>();      // acme's rows only
    /// let unit = acme.begin().await?;              // so are the unit's
    /// ```
    pub fn for_tenant(&self, tenant: impl IntoTenant) -> Result<PgBackend> {
        let mut handle = self.clone();
        handle.tenant = Some(tenant.into_tenant()?);
        Ok(handle)
    }

    /// The tenant of this handle, if it is one ([`PgBackend::for_tenant`]).
    pub fn tenant(&self) -> Option<&Tenant> {
        self.tenant.as_ref()
    }
}
