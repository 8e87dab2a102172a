//! Rules of `#[repo(cache(ttl = "5m", negative_ttl = "30s"))]`: both
//! lifetimes read like a field's `ttl` (a whole number of s, m, h, d or w),
//! are positive, the ttl is at most 30 days and the negative ttl at most the
//! ttl; and `cache(..)` is given once. (darling already refuses unknown
//! keys, with a "did you mean", and a missing `ttl`.)

use darling::Error;
use darling::error::Accumulator;
use darling::util::SpannedValue;

use super::attr::RepoInput;
use super::check::parse_duration;
use super::model::CacheModel;

/// The longest cache ttl, in seconds: 30 days.
const MAX_TTL_SECONDS: u64 = 30 * 86_400;

/// Checks `cache(..)` and builds its model (with the struct's `shape`
/// hash), or `None` when the entity is not cached or a rule failed.
pub(super) fn cache(input: &RepoInput, shape: u64, errors: &mut Accumulator) -> Option<CacheModel> {
    let (first, extra) = input.cache.split_first()?;
    for twice in extra {
        let message = "`cache(..)` is given twice: an entity has one cache setting, keep one";
        errors.push(Error::custom(message).with_span(&twice.span));
    }
    if !extra.is_empty() {
        return None;
    }
    let attr = &first.attr;
    let ttl = lifetime(&attr.ttl, "ttl", errors);
    if let Some(seconds) = ttl.filter(|s| *s > MAX_TTL_SECONDS) {
        let message = format!(
            "the cache `ttl` is {} days; it is at most 30 days (\"30d\"): it bounds how long \
             an entry whose invalidation was lost can still be served",
            seconds.div_ceil(86_400)
        );
        errors.push(Error::custom(message).with_span(&attr.ttl.span()));
        return None;
    }
    let negative_ttl = match &attr.negative_ttl {
        None => Some(0),
        Some(negative) => {
            let seconds = lifetime(negative, "negative_ttl", errors);
            if let (Some(found), Some(absent)) = (ttl, seconds)
                && absent > found
            {
                let message = format!(
                    "`negative_ttl` (\"{}\") is longer than `ttl` (\"{}\"): an absent row must \
                     not outlive a found one in the cache (a row inserted meanwhile would stay \
                     invisible longer than a changed row stays stale); use at most the ttl",
                    negative.as_str(),
                    attr.ttl.as_str()
                );
                errors.push(Error::custom(message).with_span(&negative.span()));
                return None;
            }
            seconds
        }
    };
    Some(CacheModel {
        ttl_ms: ttl? * 1_000,
        negative_ttl_ms: negative_ttl? * 1_000,
        shape,
    })
}

/// Rule: a cache lifetime is a positive whole number of s, m, h, d or w;
/// its seconds, or `None` after reporting why not.
fn lifetime(value: &SpannedValue<String>, key: &str, errors: &mut Accumulator) -> Option<u64> {
    let message = match parse_duration(value.as_str()) {
        Some(0) if key == "ttl" => "a cache `ttl` of zero would cache nothing: give a positive \
                                    duration such as \"5m\", or remove `cache(..)`"
            .to_owned(),
        Some(0) => format!(
            "a `{key}` of zero would cache no absent row: remove `{key}` to leave absent rows \
             uncached"
        ),
        Some(seconds) => return Some(seconds),
        None => format!(
            "\"{}\" is not a duration: use a whole number with s, m, h, d or w, such as \
             #[repo(cache(ttl = \"5m\", negative_ttl = \"30s\"))]",
            value.as_str()
        ),
    };
    errors.push(Error::custom(message).with_span(&value.span()));
    None
}
