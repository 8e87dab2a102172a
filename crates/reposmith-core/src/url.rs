//! Connection URLs that keep their passwords out of Debug, Display, errors and logs.
//!
//! Written by hand rather than with the `url` crate: MongoDB seed lists
//! (`mongodb://u:p@h1:27017,h2:27017/db`) are not valid WHATWG URLs, and all we
//! need is to find the userinfo and the password-bearing query parameters.

use std::fmt;

/// Query parameters whose values are secrets (compared case-insensitively).
const SECRET_PARAMS: &[&str] = &["password", "sslpassword", "tlscertificatekeyfilepassword"];

/// What replaces a secret in every printable form.
const MASK: &str = "***";

/// A connection URL whose secrets only [`ConnectionUrl::expose`] reveals.
///
/// `Debug` and `Display` print the URL with the password masked, so a config
/// struct holding one can derive `Debug` safely. [`ConnectionUrl::scrub`]
/// removes the secrets from any text, such as a driver's error message.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectionUrl {
    raw: String,
    redacted: String,
    target: String,
    secrets: Vec<String>,
}

impl ConnectionUrl {
    /// Wraps a URL such as `postgres://user:pass@host:5432/db`.
    pub fn new(url: impl Into<String>) -> Self {
        let raw = url.into();
        let parts = Parts::split(&raw);
        let secrets = parts.secrets();
        ConnectionUrl {
            redacted: parts.redacted(),
            target: parts.target(),
            secrets,
            raw,
        }
    }

    /// The URL with its secrets, for handing to a driver. Never log it.
    pub fn expose(&self) -> &str {
        &self.raw
    }

    /// The URL with the password and secret parameters masked.
    pub fn redacted(&self) -> &str {
        &self.redacted
    }

    /// Host list and path without credentials or query (`127.0.0.1:5432/app`), for error messages.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// `text` with every secret of this URL (as written and percent-decoded) masked.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.replace(&self.raw, &self.redacted);
        for secret in &self.secrets {
            out = out.replace(secret.as_str(), MASK);
        }
        out
    }
}

impl fmt::Debug for ConnectionUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ConnectionUrl")
            .field(&self.redacted)
            .finish()
    }
}

impl fmt::Display for ConnectionUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted)
    }
}

/// A URL cut into `scheme://` `userinfo@` `hosts` `/path` `?query`.
struct Parts<'a> {
    scheme: &'a str,
    user: Option<&'a str>,
    password: Option<&'a str>,
    hosts_and_path: &'a str,
    query: Option<&'a str>,
}

impl<'a> Parts<'a> {
    fn split(raw: &'a str) -> Self {
        let (scheme, rest) = match raw.find("://") {
            Some(i) => raw.split_at(i + 3),
            None => ("", raw),
        };
        // The userinfo ends at the last '@' anywhere: a password may hold an
        // unencoded '?' or '/', and masking too much is the safe way to be wrong.
        let (userinfo, after_userinfo) = match rest.rfind('@') {
            Some(i) => (Some(&rest[..i]), &rest[i + 1..]),
            None => (None, rest),
        };
        let (hosts_and_path, query) = match after_userinfo.find('?') {
            Some(i) => (&after_userinfo[..i], Some(&after_userinfo[i + 1..])),
            None => (after_userinfo, None),
        };
        let (user, password) = match userinfo.map(|u| u.split_once(':')) {
            Some(Some((user, password))) => (Some(user), Some(password)),
            Some(None) => (userinfo, None),
            None => (None, None),
        };
        Parts {
            scheme,
            user,
            password,
            hosts_and_path,
            query,
        }
    }

    fn query_pairs(&self) -> impl Iterator<Item = (&'a str, &'a str)> {
        self.query
            .unwrap_or("")
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
    }

    fn secrets(&self) -> Vec<String> {
        let query_secrets = self
            .query_pairs()
            .filter(|(key, _)| is_secret_param(key))
            .map(|(_, value)| value);
        let mut secrets: Vec<String> = self
            .password
            .into_iter()
            .chain(query_secrets)
            .filter(|s| !s.is_empty())
            .flat_map(|s| [s.to_owned(), percent_decode(s)])
            .collect();
        // Longest first, so a secret containing another is masked whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        secrets
    }

    fn redacted(&self) -> String {
        let mut out = String::from(self.scheme);
        match (self.user, self.password) {
            (Some(user), Some(_)) => out.push_str(&format!("{user}:{MASK}@")),
            (Some(user), None) => out.push_str(&format!("{user}@")),
            _ => {}
        }
        out.push_str(self.hosts_and_path);
        if self.query.is_some() {
            let pairs: Vec<String> = self
                .query_pairs()
                .map(|(key, value)| match is_secret_param(key) {
                    true => format!("{key}={MASK}"),
                    false => format!("{key}={value}"),
                })
                .collect();
            out.push('?');
            out.push_str(&pairs.join("&"));
        }
        out
    }

    fn target(&self) -> String {
        self.hosts_and_path.to_owned()
    }
}

fn is_secret_param(key: &str) -> bool {
    SECRET_PARAMS.iter().any(|s| key.eq_ignore_ascii_case(s))
}

/// Decodes `%XX` escapes; invalid escapes are kept as written.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_userinfo_password() {
        let url = ConnectionUrl::new("postgres://app:s3cr%40t@db.internal:5432/rag");
        assert_eq!(url.redacted(), "postgres://app:***@db.internal:5432/rag");
        assert_eq!(url.target(), "db.internal:5432/rag");
        assert_eq!(url.expose(), "postgres://app:s3cr%40t@db.internal:5432/rag");
        assert!(!format!("{url:?} {url}").contains("s3cr"));
    }

    #[test]
    fn scrubs_encoded_and_decoded_forms() {
        let url = ConnectionUrl::new("postgres://app:s3cr%40t@h/db");
        let text = "auth failed for s3cr@t and s3cr%40t in postgres://app:s3cr%40t@h/db";
        let scrubbed = url.scrub(text);
        assert!(!scrubbed.contains("s3cr"), "{scrubbed}");
    }

    #[test]
    fn masks_query_secrets_and_keeps_other_params() {
        let url = ConnectionUrl::new(
            "mongodb://u:pw@h1:27017,h2:27017/app?replicaSet=rs0&tlsCertificateKeyFilePassword=kp&appName=x",
        );
        assert_eq!(
            url.redacted(),
            "mongodb://u:***@h1:27017,h2:27017/app?replicaSet=rs0&tlsCertificateKeyFilePassword=***&appName=x"
        );
        assert_eq!(url.target(), "h1:27017,h2:27017/app");
        assert_eq!(url.scrub("kp pw"), "*** ***");
    }

    #[test]
    fn handles_urls_without_credentials() {
        let url = ConnectionUrl::new("redis://127.0.0.1:6379/0");
        assert_eq!(url.redacted(), "redis://127.0.0.1:6379/0");
        assert_eq!(
            url.scrub("redis://127.0.0.1:6379/0"),
            "redis://127.0.0.1:6379/0"
        );
        let user_only = ConnectionUrl::new("postgres://app@h/db");
        assert_eq!(user_only.redacted(), "postgres://app@h/db");
    }

    #[test]
    fn password_with_at_sign_is_masked_whole() {
        let url = ConnectionUrl::new("redis://:p@ss@h:6379");
        assert_eq!(url.redacted(), "redis://:***@h:6379");
        assert!(!url.scrub("bad p@ss").contains("p@ss"));
    }

    #[test]
    fn a_question_mark_or_slash_in_the_password_is_masked() {
        for raw in [
            "postgres://u:pa?ss@h/db",
            "postgres://u:pa/ss@h/db?sslmode=require",
        ] {
            let url = ConnectionUrl::new(raw);
            let shown = format!("{url} {url:?} {}", url.target());
            assert!(
                !shown.contains("pa?ss") && !shown.contains("pa/ss"),
                "{shown}"
            );
            assert!(
                url.redacted().starts_with("postgres://u:***@h/db"),
                "{}",
                url.redacted()
            );
        }
    }

    #[test]
    fn percent_decode_keeps_invalid_escapes() {
        assert_eq!(percent_decode("a%2Fb%zz%4"), "a/b%zz%4");
    }
}
