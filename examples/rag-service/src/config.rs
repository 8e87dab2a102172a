//! The service's own settings, read from the environment. The databases'
//! settings (`DATABASE_URL`, `MONGODB_URL`, `REDIS_URL` and the
//! `REPOSMITH_*` ones) are reposmith's `Config::from_env()`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use reposmith::config_source::parse_duration;

/// Settings of one service process. Every field has a default; the
/// variables say how to change it.
#[derive(Clone)]
pub struct Config {
    /// `RAG_ADDR`: where to listen (default `127.0.0.1:8080`).
    pub addr: SocketAddr,
    /// `RAG_MODEL_DIR`: the embedding model's files (default
    /// `<workspace>/target/rag/model`, where `cargo xtask rag fetch` puts them).
    pub model_dir: PathBuf,
    /// `RAG_MIGRATIONS_DIR`: the migrations applied at start (default
    /// `<workspace>/migrations/rag`; set it where the binary runs outside
    /// its source tree).
    pub migrations_dir: PathBuf,
    /// `RAG_API_KEYS`: `name=key` pairs, comma-separated. Empty (the
    /// default): no key is asked for and every caller is `anonymous`.
    pub api_keys: Vec<ApiKey>,
    /// `RAG_REQUESTS_PER_MINUTE`: per key (default 120).
    pub requests_per_minute: u64,
    /// `RAG_TOKENS_PER_MINUTE`: per key, a request costing its body's bytes
    /// / 4 (default 200,000).
    pub tokens_per_minute: u64,
    /// `RAG_LIMITS_FAIL_OPEN`: while Redis is unreachable, admit within this
    /// process's share of the limits (`true`, the default) or refuse with
    /// 503 (`false`).
    pub limits_fail_open: bool,
    /// `RAG_MAX_BODY_BYTES`: the largest request body (default 512 KiB).
    pub max_body_bytes: usize,
    /// `RAG_MAX_DOCUMENT_BYTES`: the largest document text (default 256 KiB).
    pub max_document_bytes: usize,
    /// `RAG_MAX_QUERY_CHARS`: the longest query or question (default 1,000).
    pub max_query_chars: usize,
    /// `RAG_MAX_K`: the most hits a search or question asks for (default 50).
    pub max_k: u32,
    /// `RAG_REQUEST_TIMEOUT`: the longest a request may take (default 30s).
    pub request_timeout: Duration,
    /// `RAG_SEARCH_CACHE_TTL`: how long a first page of hits is cached
    /// (default 60s; any chunk write invalidates it sooner).
    pub search_cache_ttl: Duration,
    /// `RAG_QUERY_CACHE_ENTRIES`: query embeddings kept in process (default
    /// 10,000; see [`QueryVectors`](crate::api::query_vectors::QueryVectors)).
    pub query_cache_entries: u64,
    /// `RAG_QUERY_CACHE_TTL`: how long a query's embedding is kept (default 1h).
    pub query_cache_ttl: Duration,
    /// `RAG_EMBED_TIMEOUT`: the longest one embedding call may take (default 60s).
    pub embed_timeout: Duration,
    /// `RAG_EMBED_WORKERS`: embedding jobs run at once (default 2).
    pub embed_workers: usize,
    /// `RAG_SHUTDOWN_GRACE`: how long running jobs may finish at shutdown (default 10s).
    pub shutdown_grace: Duration,
    /// The key prefix of the limiter's and the queues' Redis keys
    /// (`RAG_REDIS_PREFIX`, default `rag`; a test gives its own).
    pub redis_prefix: String,
}

/// One API key and the name its limits, sessions and traces go by.
#[derive(Clone)]
pub struct ApiKey {
    /// Shown in traces and used as the limiter's subject.
    pub name: String,
    /// The secret the client sends in `x-api-key`.
    pub key: String,
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiKey({:?}, ***)", self.name)
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("addr", &self.addr)
            .field("api_keys", &self.api_keys)
            .field("requests_per_minute", &self.requests_per_minute)
            .field("tokens_per_minute", &self.tokens_per_minute)
            .field("max_body_bytes", &self.max_body_bytes)
            .finish_non_exhaustive()
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            model_dir: workspace_root().join("target/rag/model"),
            migrations_dir: workspace_root().join("migrations/rag"),
            api_keys: Vec::new(),
            requests_per_minute: 120,
            tokens_per_minute: 200_000,
            limits_fail_open: true,
            max_body_bytes: 512 * 1024,
            max_document_bytes: 256 * 1024,
            max_query_chars: 1_000,
            max_k: 50,
            request_timeout: Duration::from_secs(30),
            search_cache_ttl: Duration::from_secs(60),
            query_cache_entries: 10_000,
            query_cache_ttl: Duration::from_secs(3_600),
            embed_timeout: Duration::from_secs(60),
            embed_workers: 2,
            shutdown_grace: Duration::from_secs(10),
            redis_prefix: "rag".to_owned(),
        }
    }
}

/// The source tree's root, from this crate's manifest directory
/// (`examples/rag-service`): the defaults work from any directory under
/// `cargo run`.
fn workspace_root() -> PathBuf {
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .nth(2)
        .map_or_else(|| PathBuf::from("."), std::path::Path::to_path_buf)
}

/// A setting that does not parse, naming the variable.
#[derive(Debug, thiserror::Error)]
#[error("{variable}: {reason}")]
pub struct ConfigError {
    /// The environment variable.
    pub variable: &'static str,
    /// What is wrong with its value.
    pub reason: String,
}

impl Config {
    /// The settings from the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|name| std::env::var(name).ok())
    }

    /// The settings from `lookup` (variable name → value), defaults for the rest.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let mut c = Config::default();
        let get = |name: &'static str| lookup(name).filter(|v| !v.trim().is_empty());
        if let Some(v) = get("RAG_ADDR") {
            c.addr = parse("RAG_ADDR", &v)?;
        }
        if let Some(v) = get("RAG_MODEL_DIR") {
            c.model_dir = v.into();
        }
        if let Some(v) = get("RAG_MIGRATIONS_DIR") {
            c.migrations_dir = v.into();
        }
        if let Some(v) = get("RAG_API_KEYS") {
            c.api_keys = api_keys(&v)?;
        }
        let number = |name: &'static str, default: u64| -> Result<u64, ConfigError> {
            get(name).map_or(Ok(default), |v| positive(name, &v))
        };
        c.requests_per_minute = number("RAG_REQUESTS_PER_MINUTE", c.requests_per_minute)?;
        c.tokens_per_minute = number("RAG_TOKENS_PER_MINUTE", c.tokens_per_minute)?;
        c.max_body_bytes = number("RAG_MAX_BODY_BYTES", c.max_body_bytes as u64)? as usize;
        c.max_document_bytes =
            number("RAG_MAX_DOCUMENT_BYTES", c.max_document_bytes as u64)? as usize;
        c.max_query_chars = number("RAG_MAX_QUERY_CHARS", c.max_query_chars as u64)? as usize;
        c.query_cache_entries =
            number("RAG_QUERY_CACHE_ENTRIES", c.query_cache_entries)?.min(1_000_000);
        c.max_k = number("RAG_MAX_K", u64::from(c.max_k))?.min(1_000) as u32;
        c.embed_workers = number("RAG_EMBED_WORKERS", c.embed_workers as u64)?.min(64) as usize;
        if let Some(v) = get("RAG_LIMITS_FAIL_OPEN") {
            c.limits_fail_open = parse("RAG_LIMITS_FAIL_OPEN", &v)?;
        }
        let duration = |name: &'static str, default: Duration| -> Result<Duration, ConfigError> {
            match get(name) {
                None => Ok(default),
                Some(v) => match parse_duration(&v) {
                    Ok(d) if !d.is_zero() => Ok(d),
                    _ => Err(invalid(
                        name,
                        "expected a duration such as 500ms, 30s or 2m",
                    )),
                },
            }
        };
        c.request_timeout = duration("RAG_REQUEST_TIMEOUT", c.request_timeout)?;
        c.search_cache_ttl = duration("RAG_SEARCH_CACHE_TTL", c.search_cache_ttl)?;
        c.query_cache_ttl = duration("RAG_QUERY_CACHE_TTL", c.query_cache_ttl)?;
        c.embed_timeout = duration("RAG_EMBED_TIMEOUT", c.embed_timeout)?;
        c.shutdown_grace = duration("RAG_SHUTDOWN_GRACE", c.shutdown_grace)?;
        if let Some(v) = get("RAG_REDIS_PREFIX") {
            c.redis_prefix = v;
        }
        Ok(c)
    }
}

fn invalid(variable: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        variable,
        reason: reason.into(),
    }
}

fn parse<T: std::str::FromStr>(variable: &'static str, value: &str) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    value
        .trim()
        .parse()
        .map_err(|e: T::Err| invalid(variable, format!("{e}: {value:?}")))
}

fn positive(variable: &'static str, value: &str) -> Result<u64, ConfigError> {
    match parse::<u64>(variable, value)? {
        0 => Err(invalid(variable, "must be at least 1")),
        n => Ok(n),
    }
}

/// `name=key,name=key`; names are 1 to 64 of `A-Z a-z 0-9 _ - .`, keys at
/// least 16 characters; neither repeats.
fn api_keys(value: &str) -> Result<Vec<ApiKey>, ConfigError> {
    const VAR: &str = "RAG_API_KEYS";
    let mut keys: Vec<ApiKey> = Vec::new();
    for pair in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((name, key)) = pair.split_once('=') else {
            return Err(invalid(VAR, "expected name=key pairs separated by commas"));
        };
        let (name, key) = (name.trim(), key.trim());
        let name_ok = (1..=64).contains(&name.len())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !name_ok {
            return Err(invalid(
                VAR,
                format!("key name {name:?}: 1 to 64 of A-Z a-z 0-9 _ - ."),
            ));
        }
        if key.len() < 16 {
            return Err(invalid(
                VAR,
                format!("the key of {name:?} is shorter than 16 characters"),
            ));
        }
        if keys.iter().any(|k| k.name == name || k.key == key) {
            return Err(invalid(VAR, format!("{name:?} or its key appears twice")));
        }
        keys.push(ApiKey {
            name: name.to_owned(),
            key: key.to_owned(),
        });
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_keys_limits_and_durations() {
        let env = |name: &str| match name {
            "RAG_API_KEYS" => Some("alice=0123456789abcdef, bob=fedcba9876543210".to_owned()),
            "RAG_TOKENS_PER_MINUTE" => Some("5000".to_owned()),
            "RAG_REQUEST_TIMEOUT" => Some("5s".to_owned()),
            "RAG_QUERY_CACHE_ENTRIES" => Some("500".to_owned()),
            _ => None,
        };
        let config = Config::from_lookup(env).unwrap();
        assert_eq!(config.api_keys.len(), 2);
        assert_eq!(config.api_keys[1].name, "bob");
        assert_eq!(config.tokens_per_minute, 5_000);
        assert_eq!(config.request_timeout, Duration::from_secs(5));
        assert_eq!(config.query_cache_entries, 500);
        assert_eq!(config.query_cache_ttl, Duration::from_secs(3_600));
        assert!(!format!("{config:?}").contains("0123456789abcdef"));
    }

    #[test]
    fn refuses_bad_values_naming_the_variable() {
        for (name, value) in [
            ("RAG_API_KEYS", "alice=short"),
            ("RAG_API_KEYS", "no-equals-sign"),
            ("RAG_REQUESTS_PER_MINUTE", "0"),
            ("RAG_QUERY_CACHE_ENTRIES", "-1"),
            ("RAG_REQUEST_TIMEOUT", "soon"),
            ("RAG_ADDR", "localhost"),
        ] {
            let error =
                Config::from_lookup(|n| (n == name).then(|| value.to_owned())).expect_err(value);
            assert_eq!(error.variable, name);
        }
    }
}
