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
//!
//! The handle's tenant also reaches what its repositories and units send
//! elsewhere: a tenant-scoped entity's cache entries are the tenant's own
//! (`Cache::scoped_to`), and the outbox rows a tenant's unit writes carry
//! the tenant in their `tenant` column, which the relay hands on
//! (`OutboxMessage::tenant`, then the job's tenant on a queue).

use std::sync::Arc;

use reposmith_core::{IntoTenant, Result, Tenant};

use crate::{PgBackend, PooledConnection, PoolerMode};

/// A handle's tenant and its setting's text (one allocation per handle,
/// shared by its clones).
#[derive(Debug)]
pub(crate) struct HandleTenant {
    pub(crate) tenant: Tenant,
    pub(crate) setting: Arc<str>,
}

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
        let tenant = tenant.into_tenant()?;
        let setting = Arc::from(tenant.setting());
        let mut handle = self.clone();
        handle.tenant = Some(Arc::new(HandleTenant { tenant, setting }));
        Ok(handle)
    }

    /// The tenant of this handle, if it is one ([`PgBackend::for_tenant`]).
    pub fn tenant(&self) -> Option<&Tenant> {
        self.tenant.as_ref().map(|t| &t.tenant)
    }

    /// The handle's tenant as the setting's text.
    pub(crate) fn tenant_setting(&self) -> Option<&Arc<str>> {
        self.tenant.as_ref().map(|t| &t.setting)
    }
}

/// Sets the session's tenant (Direct mode): lasts until changed, so a
/// pooled connection already carrying the wanted tenant needs no statement.
const SET_SESSION_TENANT: &str = "SELECT set_config('reposmith.tenant', $1, false)";

/// Sets the transaction's tenant (`SET LOCAL` semantics): behind a
/// transaction pooler, where no session outlives a transaction.
pub(crate) const SET_LOCAL_TENANT: &str = "SELECT set_config('reposmith.tenant', $1, true)";

/// Makes `connection`'s session carry `wanted` (`None`: no tenant, the
/// setting emptied), sending `set_config` only when the connection's tag
/// differs. A failure leaves the session's setting uncertain, so the
/// connection is discarded rather than pooled.
pub(crate) async fn tag_session(
    connection: &mut PooledConnection,
    wanted: Option<&Arc<str>>,
) -> sqlx::Result<()> {
    if connection.tenant() == wanted {
        return Ok(());
    }
    let value = wanted.map_or("", |t| &**t);
    let outcome = sqlx::query(SET_SESSION_TENANT)
        .bind(value)
        .execute(&mut **connection)
        .await;
    connection.settle(&outcome);
    match outcome {
        Ok(_) => {
            connection.set_tenant(wanted.cloned());
            Ok(())
        }
        Err(error) => {
            connection.discard();
            Err(error)
        }
    }
}

impl PgBackend {
    /// A pooled connection for this handle's statements: in Direct mode its
    /// session carries the handle's tenant (set only when the connection's
    /// tag differs; a connection of a handle without a tenant keeps what it
    /// has, which only tenant-scoped tables read and those refuse such a
    /// handle before sending anything); behind a transaction pooler the
    /// tenant is set locally in each operation's transaction instead.
    pub(crate) async fn acquire_scoped(&self) -> Result<PooledConnection> {
        let mut connection = self.acquire_raw().await?;
        match self.pooler() {
            PoolerMode::Direct => {
                if let Some(setting) = self.tenant_setting() {
                    let tagged = tag_session(&mut connection, Some(setting)).await;
                    tagged.map_err(|e| self.map_error(e))?;
                }
            }
            _ => connection.set_local_tenant(self.tenant_setting().cloned()),
        }
        Ok(connection)
    }
}
