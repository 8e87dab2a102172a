//! What a handler receives ([`JobContext`]) and returns on failure
//! ([`JobError`]).

use std::fmt;

use reposmith_core::Tenant;
use reposmith_core::job::Job;
use uuid::Uuid;

/// One attempt of one job, handed to the worker's handler.
#[derive(Debug)]
pub struct JobContext<J: Job> {
    pub(crate) job: J,
    pub(crate) id: Uuid,
    pub(crate) attempt: u32,
    pub(crate) max_attempts: u32,
    pub(crate) key: Option<String>,
    pub(crate) tenant: Option<Tenant>,
}

impl<J: Job> JobContext<J> {
    /// The job.
    pub fn job(&self) -> &J {
        &self.job
    }

    /// The job, taken out of the context.
    pub fn into_job(self) -> J {
        self.job
    }

    /// The job's id (a UUID v7, or the outbox message's id).
    pub fn id(&self) -> Uuid {
        self.id
    }

    /// This attempt's number, from 1.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Attempts in all.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// True when a failure of this attempt sends the job to the dead-letter set.
    pub fn is_last_attempt(&self) -> bool {
        self.attempt >= self.max_attempts
    }

    /// The tenant the job was enqueued for: by a tenant's queue handle
    /// ([`Queue::for_tenant`](super::Queue::for_tenant)), or by a unit of
    /// work opened for a tenant, through the outbox. Open the handler's
    /// repositories with `store.for_tenant(tenant.clone())` to work on the
    /// tenant's rows. `None` for a job of no tenant (and for jobs enqueued
    /// before jobs carried tenants).
    ///
    /// It is read back as text (see `reposmith_core::tenant`): it reaches
    /// the rows of an integer or UUID tenant column all the same.
    pub fn tenant(&self) -> Option<&Tenant> {
        self.tenant.as_ref()
    }

    /// The queue's name.
    pub fn queue(&self) -> &'static str {
        J::QUEUE
    }

    /// What names this job's effect for an idempotency guard: its
    /// idempotency key, or its id when it has none. Every attempt and every
    /// redelivery of the job has the same one.
    pub fn idempotency_key(&self) -> String {
        match &self.key {
            Some(key) => key.clone(),
            None => self.id.to_string(),
        }
    }
}

/// Why an attempt failed, and whether to try again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobError {
    message: String,
    fatal: bool,
}

impl JobError {
    /// A failure worth another attempt (after the job's backoff), while
    /// attempts remain.
    pub fn retry(message: impl Into<String>) -> JobError {
        JobError {
            message: message.into(),
            fatal: false,
        }
    }

    /// A failure no retry can fix (bad input): the job goes to the
    /// dead-letter set now.
    pub fn fatal(message: impl Into<String>) -> JobError {
        JobError {
            message: message.into(),
            fatal: true,
        }
    }

    /// What went wrong.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// True when the job goes to the dead-letter set without more attempts.
    pub fn is_fatal(&self) -> bool {
        self.fatal
    }
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for JobError {}

/// A reposmith error is retried, except invalid input, which no retry fixes.
impl From<reposmith_core::Error> for JobError {
    fn from(error: reposmith_core::Error) -> JobError {
        let fatal = matches!(
            error,
            reposmith_core::Error::InvalidInput { .. } | reposmith_core::Error::TooLarge { .. }
        );
        JobError {
            message: error.to_string(),
            fatal,
        }
    }
}
