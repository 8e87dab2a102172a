//! The idempotency guard for job handlers that write to PostgreSQL: the
//! job's key is recorded in the same transaction as its effects, so a
//! duplicate delivery (a lost ack, a relay replay) commits nothing twice.

use reposmith_core::job::validate_name;
use reposmith_core::repository::BoxFuture;
use reposmith_core::{Error, Result};

use crate::{PgBackend, PgUnitOfWork};

/// Records that one job's effects were committed.
///
/// Two deliveries of the same job running at once: the second's insert of
/// the receipt waits for the first's transaction; if that commits, the
/// second sees the receipt and does nothing, and if it rolls back, the
/// second runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    key: String,
    queue: String,
    job_id: String,
}

impl Receipt {
    /// The receipt of job `job_id` on `queue`, keyed by the job id: every
    /// delivery of this job (a redelivery after a lost ack or a crash, the
    /// outbox relay sending it again) shares it, while a later job with the
    /// same idempotency key (the document changed, embed it again) runs.
    /// What a job handler normally uses.
    pub fn for_job(queue: impl Into<String>, job_id: impl std::fmt::Display) -> Result<Receipt> {
        let job_id = job_id.to_string();
        Receipt::new(queue, job_id.clone(), job_id)
    }

    /// The receipt of job `job_id` on `queue`, keyed by `key`: an effect
    /// that must happen once however many jobs ask for it (the key of
    /// [`for_job`](Self::for_job) is the job id).
    pub fn new(
        queue: impl Into<String>,
        key: impl Into<String>,
        job_id: impl Into<String>,
    ) -> Result<Receipt> {
        let (queue, key, job_id) = (queue.into(), key.into(), job_id.into());
        validate_name("queue", &queue)?;
        if key.is_empty() || key.len() > 512 || key.contains('\0') {
            return Err(Error::invalid(
                "JobReceipt",
                "key",
                "must be 1 to 512 bytes without NUL",
            ));
        }
        Ok(Receipt {
            key: format!("{queue}:{key}"),
            queue,
            job_id,
        })
    }
}

impl PgBackend {
    /// Runs `work` once per receipt: in a unit of work that first records
    /// `receipt`, committed with `work`'s writes. When the receipt is already
    /// recorded (the job's effects were committed by an earlier delivery),
    /// `work` does not run and the result is `Ok(None)`; an error from `work`
    /// rolls everything back, receipt included, so a retry runs it again.
    pub async fn run_once<T, F>(&self, receipt: &Receipt, work: F) -> Result<Option<T>>
    where
        F: for<'u> FnOnce(&'u PgUnitOfWork) -> BoxFuture<'u, Result<T>>,
    {
        let unit = self.begin().await?;
        let recorded = {
            let mut connection = unit.connection().await?;
            sqlx::query(
                "INSERT INTO reposmith_job_receipts (key, queue, job_id) VALUES ($1, $2, $3) \
                 ON CONFLICT (key) DO NOTHING",
            )
            .bind(&receipt.key)
            .bind(&receipt.queue)
            .bind(&receipt.job_id)
            .execute(&mut *connection)
            .await
            .map_err(|e| crate::outbox::write_error(self, e))?
            .rows_affected()
        };
        if recorded == 0 {
            tracing::debug!(key = %receipt.key, job = %receipt.job_id, "job already done; skipped");
            unit.rollback().await?;
            return Ok(None);
        }
        let value = work(&unit).await?;
        unit.commit().await?;
        Ok(Some(value))
    }
}
