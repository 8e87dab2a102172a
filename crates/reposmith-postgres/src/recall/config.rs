//! The recall monitor's settings ([`RecallConfig`]) and the tuner's
//! ([`TuneConfig`]), part of [`PgConfig`](crate::PgConfig) and read from
//! `REPOSMITH_PG_RECALL_*` variables.

use std::time::Duration;

use reposmith_core::config::Env;
use reposmith_core::{Error, Result};

use super::tuner::Rules;

/// The recall monitor: off unless `sample_rate` is above zero.
///
/// | setting | default | why |
/// |---|---|---|
/// | `sample_rate` | 0 (off) | each sample costs one exact scan of the table; 0.01 is a good start |
/// | `concurrency` | 1 | exact scans running at once; each is one server process (no parallel workers) and one pooled connection |
/// | `queue` | 16 | samples waiting for a slot; more are dropped and counted, never queued without bound |
/// | `timeout` | 5 s | `statement_timeout` of one exact scan; a slower one fails and is counted |
/// | `window` | 100 | the recall gauge is the mean of the last `window` samples of a field |
/// | `tune` | none | see [`TuneConfig`] |
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RecallConfig {
    /// Fraction of eligible searches re-run exactly (0 to 1).
    pub sample_rate: f64,
    /// Exact re-runs at once (at least 1, below `max_connections`).
    pub concurrency: usize,
    /// Samples that may wait for a free slot; beyond it samples are dropped.
    pub queue: usize,
    /// Statement timeout of one exact re-run.
    pub timeout: Duration,
    /// Samples the per-field recall gauge averages over.
    pub window: usize,
    /// `ef_search`/`probes` tuning toward a recall target; `None` measures only.
    pub tune: Option<TuneConfig>,
}

impl Default for RecallConfig {
    fn default() -> Self {
        RecallConfig {
            sample_rate: 0.0,
            concurrency: 1,
            queue: 16,
            timeout: Duration::from_secs(5),
            window: 100,
            tune: None,
        }
    }
}

/// Tuning of `hnsw.ef_search` (HNSW fields) and `ivfflat.probes` (IVFFlat
/// fields) toward a recall target, within a floor and a ceiling; the rules
/// are in the `recall::tuner` module's docs.
///
/// | setting | default | why |
/// |---|---|---|
/// | `target` | (required) | recall@k the tuner steers to, such as 0.95 |
/// | `ef_search` | 40..=400 | pgvector's default is the floor, so tuning never serves worse recall than before unless asked to; past 400 the index itself (`m`, `ef_construction`) is the problem |
/// | `probes` | 1..=100 | pgvector's default is the floor; never more than the index's `lists` |
/// | `min_samples` | 20 | samples at a value before a verdict (recall@10 of one search moves in steps of 0.1) |
/// | `max_samples` | 200 | a probe decides on the mean after this many (its standard error is then about 0.02 at recall 0.92); a settled value is re-judged per block of this many |
/// | `margin` | 0.02 | with no known too-low value, the tuner lowers only above `target + margin` (hysteresis) |
/// | `confidence` | 1.64 | width of the Wilson interval a window must clear the target by, in standard errors (one-sided 95 %); 0 decides on the mean alone |
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct TuneConfig {
    /// Recall@k to reach.
    pub target: f64,
    /// Floor and ceiling of `hnsw.ef_search`.
    pub ef_search: (u32, u32),
    /// Floor and ceiling of `ivfflat.probes`.
    pub probes: (u32, u32),
    /// Samples at one value before a verdict.
    pub min_samples: usize,
    /// Samples after which a probe decides on the mean; block size of re-checks.
    pub max_samples: usize,
    /// How far above the target recall must be before the tuner lowers the knob.
    pub margin: f64,
    /// Width of the interval a window must clear the target by, in standard errors.
    pub confidence: f64,
}

impl TuneConfig {
    /// Tuning toward `target` with the documented defaults.
    pub fn new(target: f64) -> Self {
        TuneConfig {
            target,
            ef_search: (40, 400),
            probes: (1, 100),
            min_samples: 20,
            max_samples: 200,
            margin: 0.02,
            confidence: 1.64,
        }
    }

    /// The tuner's rules for a knob bounded by `(floor, ceiling)`.
    pub(crate) fn rules(&self, (floor, ceiling): (u32, u32)) -> Rules {
        Rules {
            target: self.target,
            floor,
            ceiling: ceiling.max(floor),
            min_samples: self.min_samples,
            max_samples: self.max_samples.max(self.min_samples),
            margin: self.margin,
            z: self.confidence,
            growth: 1.5,
            precision: 0.1,
            memory: 50 * self.max_samples.max(1) as u64,
        }
    }
}

impl RecallConfig {
    /// Monitoring of `rate` of the searches, other settings at their defaults.
    pub fn sampled(rate: f64) -> Self {
        RecallConfig {
            sample_rate: rate,
            ..RecallConfig::default()
        }
    }

    /// Adds tuning toward `target` with [`TuneConfig::new`]'s defaults.
    pub fn tune_to(mut self, target: f64) -> Self {
        self.tune = Some(TuneConfig::new(target));
        self
    }

    /// `REPOSMITH_PG_RECALL_*` over these settings.
    pub(crate) fn apply_env(&mut self, env: &Env<'_>) -> Result<()> {
        let var = |name: &str| format!("REPOSMITH_PG_RECALL_{name}");
        self.sample_rate = env.number(&var("SAMPLE_RATE"))?.unwrap_or(self.sample_rate);
        self.concurrency = env.number(&var("CONCURRENCY"))?.unwrap_or(self.concurrency);
        self.queue = env.number(&var("QUEUE"))?.unwrap_or(self.queue);
        self.timeout = env.duration(&var("TIMEOUT"))?.unwrap_or(self.timeout);
        self.window = env.number(&var("WINDOW"))?.unwrap_or(self.window);
        if let Some(target) = env.number::<f64>(&var("TARGET"))? {
            self.tune = Some(TuneConfig::new(target));
        }
        if let Some(tune) = &mut self.tune {
            let ef = &mut tune.ef_search;
            ef.0 = env.number(&var("EF_SEARCH_MIN"))?.unwrap_or(ef.0);
            ef.1 = env.number(&var("EF_SEARCH_MAX"))?.unwrap_or(ef.1);
            let probes = &mut tune.probes;
            probes.0 = env.number(&var("PROBES_MIN"))?.unwrap_or(probes.0);
            probes.1 = env.number(&var("PROBES_MAX"))?.unwrap_or(probes.1);
            tune.min_samples = env.number(&var("MIN_SAMPLES"))?.unwrap_or(tune.min_samples);
        }
        Ok(())
    }

    /// Rejects settings the monitor cannot honour, naming the setting.
    pub(crate) fn validate(&self, max_connections: u32) -> Result<()> {
        let fail = |reason: String| Err(Error::config("postgresql recall monitor", reason));
        if !(0.0..=1.0).contains(&self.sample_rate) {
            return fail(format!(
                "sample_rate must be between 0 and 1, got {}",
                self.sample_rate
            ));
        }
        if self.sample_rate == 0.0 {
            return match self.tune {
                Some(_) => fail("tuning needs samples: set sample_rate above 0".into()),
                None => Ok(()),
            };
        }
        if self.concurrency == 0 || self.concurrency >= max_connections as usize {
            return fail(format!(
                "concurrency must be at least 1 and below max_connections ({max_connections}) \
                 so searches keep a connection, got {}",
                self.concurrency
            ));
        }
        if self.timeout.is_zero() || self.window == 0 {
            return fail("timeout and window must be greater than zero".into());
        }
        match &self.tune {
            Some(tune) => tune.validate().map_or_else(fail, |()| Ok(())),
            None => Ok(()),
        }
    }
}

impl TuneConfig {
    fn validate(&self) -> std::result::Result<(), String> {
        if self.target.is_nan() || self.target <= 0.0 || self.target > 1.0 {
            return Err(format!("target must be in (0, 1], got {}", self.target));
        }
        let (ef, probes) = (self.ef_search, self.probes);
        if ef.0 == 0 || ef.0 > ef.1 || ef.1 > 1000 {
            return Err(format!(
                "ef_search range must be within 1..=1000, got {}..={}",
                ef.0, ef.1
            ));
        }
        if probes.0 == 0 || probes.0 > probes.1 || probes.1 > 32_768 {
            let (lo, hi) = probes;
            return Err(format!(
                "probes range must be within 1..=32768, got {lo}..={hi}"
            ));
        }
        let negative = |x: f64| x.is_nan() || x < 0.0;
        if self.min_samples == 0 || negative(self.margin) || negative(self.confidence) {
            return Err(
                "min_samples must be at least 1; margin and confidence not negative".into(),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &'static [(&'static str, &'static str)]) -> Env<'static> {
        Env::from_fn(move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn off_by_default_and_read_from_the_environment() {
        let config = RecallConfig::default();
        assert_eq!(config.sample_rate, 0.0);
        assert!(config.tune.is_none() && config.validate(10).is_ok());
        let mut config = RecallConfig::default();
        let vars = env(&[
            ("REPOSMITH_PG_RECALL_SAMPLE_RATE", "0.01"),
            ("REPOSMITH_PG_RECALL_QUEUE", "4"),
            ("REPOSMITH_PG_RECALL_TIMEOUT", "2s"),
            ("REPOSMITH_PG_RECALL_TARGET", "0.95"),
            ("REPOSMITH_PG_RECALL_EF_SEARCH_MAX", "200"),
        ]);
        config.apply_env(&vars).unwrap();
        assert_eq!((config.sample_rate, config.queue), (0.01, 4));
        assert_eq!(config.timeout, Duration::from_secs(2));
        let tune = config.tune.as_ref().unwrap();
        assert_eq!((tune.target, tune.ef_search), (0.95, (40, 200)));
        config.validate(10).unwrap();
    }

    #[test]
    fn bad_settings_are_named() {
        let err = |c: RecallConfig| c.validate(4).unwrap_err().to_string();
        assert!(err(RecallConfig::sampled(1.5)).contains("sample_rate"));
        let tuned_without_samples = RecallConfig::sampled(0.0).tune_to(0.95);
        assert!(err(tuned_without_samples).contains("needs samples"));
        let busy = RecallConfig {
            concurrency: 4,
            ..RecallConfig::sampled(0.1)
        };
        assert!(err(busy).contains("below max_connections (4)"));
        let mut inverted = RecallConfig::sampled(0.1).tune_to(0.95);
        inverted.tune.as_mut().unwrap().ef_search = (100, 50);
        assert!(err(inverted).contains("ef_search range"));
        assert!(err(RecallConfig::sampled(0.1).tune_to(1.2)).contains("target"));
    }
}
