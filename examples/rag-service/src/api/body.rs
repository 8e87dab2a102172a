//! [`JsonBody`]: a request body read as JSON, every refusal a JSON error:
//! another content type (415), bytes that are not UTF-8 or not JSON (400),
//! JSON of the wrong shape (400, naming the field). The body's size was
//! already bounded by the request layer (413).

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// A JSON request body deserialized into `T`.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        check_content_type(request.headers().get(header::CONTENT_TYPE))?;
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_body",
                    format!("the body could not be read: {rejection}"),
                )
            })?;
        parse(&bytes).map(JsonBody)
    }
}

/// `application/json`, with no parameter but `charset=utf-8`.
fn check_content_type(value: Option<&axum::http::HeaderValue>) -> Result<(), ApiError> {
    let refuse = |found: &str| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("send the body as Content-Type: application/json (got {found})"),
        )
    };
    let Some(value) = value else {
        return Err(refuse("no Content-Type"));
    };
    let text = value
        .to_str()
        .map_err(|_| refuse("a non-ASCII Content-Type"))?;
    let mut parts = text.split(';').map(|p| p.trim().to_ascii_lowercase());
    let essence = parts.next().unwrap_or_default();
    let params_ok = parts.all(|p| p.is_empty() || p.replace(' ', "") == "charset=utf-8");
    if essence == "application/json" && params_ok {
        Ok(())
    } else {
        Err(refuse(&format!("{text:?}")))
    }
}

/// UTF-8 first (its own error), then JSON syntax, then the shape of `T`.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if let Err(error) = std::str::from_utf8(bytes) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_utf8",
            format!(
                "the body is not UTF-8: invalid byte at offset {}",
                error.valid_up_to()
            ),
        ));
    }
    // Through a `Value` first: serde would read a struct from an array too.
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|error| {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", error.to_string())
    })?;
    if !value.is_object() {
        return Err(ApiError::invalid("the body must be a JSON object"));
    }
    serde_json::from_value(value).map_err(|error| ApiError::invalid(error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn accepts_json_with_or_without_utf8_charset() {
        for ok in ["application/json", "Application/JSON; charset=UTF-8"] {
            assert!(check_content_type(Some(&HeaderValue::from_static(ok))).is_ok());
        }
        for bad in [
            "text/plain",
            "application/json; charset=latin1",
            "application/jsonx",
        ] {
            let error = check_content_type(Some(&HeaderValue::from_static(bad))).unwrap_err();
            assert_eq!(error.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        }
        assert!(check_content_type(None).is_err());
    }

    #[test]
    fn tells_utf8_syntax_and_shape_apart() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code, reason = "only parsed")]
        struct Q {
            query: String,
        }
        assert_eq!(
            parse::<Q>(b"{\"query\": \"\xff\"}").unwrap_err().code,
            "invalid_utf8"
        );
        assert_eq!(
            parse::<Q>(b"{\"query\": ").unwrap_err().code,
            "invalid_json"
        );
        assert_eq!(parse::<Q>(b"[\"a\"]").unwrap_err().code, "invalid_request");
        let shape = parse::<Q>(b"{\"query\": \"a\", \"kk\": 1}").unwrap_err();
        assert_eq!(shape.code, "invalid_request");
        assert!(shape.message.contains("kk"), "{}", shape.message);
    }
}
