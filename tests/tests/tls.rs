//! TLS to every backend with a CA made by `openssl` in the test (S2):
//! `verify-full` with the right CA connects and the session is encrypted; a
//! wrong CA or a host name the certificate does not name is refused at
//! connect with a typed error; and a URL that would go unencrypted to a
//! host other than this machine is refused before anything is sent, unless
//! plaintext is allowed.

#[path = "tls/mongo.rs"]
mod mongo;
#[path = "tls/postgres.rs"]
mod postgres;
#[path = "tls/redis.rs"]
mod redis;

use reposmith::config_source::Env;
use reposmith::{Config, Error};

/// The plaintext policy through the facade's `Config::from_env`: each
/// backend's URL to a non-loopback host without TLS is an `Error::Config`
/// naming it (password masked); `REPOSMITH_ALLOW_PLAINTEXT=1` lifts it; a
/// loopback URL never needs it; TLS URLs pass.
#[test]
fn plaintext_to_a_non_loopback_host_is_refused_unless_allowed() {
    if reposmith_core::tls::plaintext_allowed_by_env() {
        eprintln!(
            "not run here: REPOSMITH_ALLOW_PLAINTEXT is set in this process, which allows \
             plaintext for every config"
        );
        return;
    }
    let cases = [
        (
            "DATABASE_URL",
            "postgres://app:canary-pw@db.internal:5432/rag",
        ),
        (
            "DATABASE_URL",
            "postgres://app:canary-pw@10.2.3.4/rag?sslmode=prefer",
        ),
        (
            "MONGODB_URL",
            "mongodb://app:canary-pw@mongo.internal:27017/rag",
        ),
        ("REDIS_URL", "redis://:canary-pw@cache.internal:6379/0"),
    ];
    for (variable, url) in cases {
        let only = |allow: bool| {
            Env::from_fn(move |name| match name {
                n if n == variable => Some(url.to_owned()),
                "REPOSMITH_ALLOW_PLAINTEXT" if allow => Some("1".to_owned()),
                _ => None,
            })
        };
        match Config::from_env_source(&only(false)) {
            Err(err @ Error::Config { .. }) => {
                let text = err.to_string();
                assert!(!text.contains("canary-pw"), "{text}");
                assert!(text.contains("REPOSMITH_ALLOW_PLAINTEXT=1"), "{text}");
                assert!(
                    text.contains(".internal") || text.contains("10.2.3.4"),
                    "{text}"
                );
            }
            other => panic!("{url}: expected Error::Config, got {other:?}"),
        }
        Config::from_env_source(&only(true)).unwrap_or_else(|e| panic!("{url} allowed: {e}"));
    }
    for (variable, url) in [
        (
            "DATABASE_URL",
            "postgres://app:pw@db.internal/rag?sslmode=verify-full",
        ),
        (
            "MONGODB_URL",
            "mongodb://app:pw@mongo.internal/rag?tls=true",
        ),
        ("REDIS_URL", "rediss://:pw@cache.internal:6380/0"),
        (
            "DATABASE_URL",
            "postgres://app:pw@127.0.0.1/rag?sslmode=disable",
        ),
        ("REDIS_URL", "redis://[::1]:6379/0"),
    ] {
        let env = Env::from_fn(move |name| (name == variable).then(|| url.to_owned()));
        Config::from_env_source(&env).unwrap_or_else(|e| panic!("{url}: {e}"));
    }
    eprintln!(
        "4 plaintext URLs to other hosts refused (password masked), allowed with \
         REPOSMITH_ALLOW_PLAINTEXT=1; TLS and loopback URLs pass"
    );
}

/// The first line of an error's text, for a figure.
fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().to_owned()
}
