//! Reading `Authorization: Bearer <token68>` (RFC 6750 §2.1, RFC 9110 §11.4).

use http::HeaderMap;
use http::header::AUTHORIZATION;

/// Why no bearer token could be read from a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BearerError {
    /// No `Authorization` header, or one of another scheme: answer 401 with a plain challenge.
    Missing,
    /// A malformed header or several of them: answer 400 `invalid_request`.
    Malformed,
}

/// The bearer token of a request. The scheme is case-insensitive and followed by exactly one
/// space; the token has the token68 syntax (`A-Z a-z 0-9 - . _ ~ + /`, then `=` padding only).
pub fn bearer_token(headers: &HeaderMap) -> Result<&str, BearerError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err(if headers.contains_key(AUTHORIZATION) {
            BearerError::Malformed
        } else {
            BearerError::Missing
        });
    };
    let value = value.to_str().map_err(|_| BearerError::Malformed)?;
    let Some((scheme, token)) = value.split_once(' ') else {
        return Err(if value.eq_ignore_ascii_case("bearer") {
            BearerError::Malformed
        } else {
            BearerError::Missing
        });
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(BearerError::Missing);
    }
    if is_token68(token) {
        Ok(token)
    } else {
        Err(BearerError::Malformed)
    }
}

fn is_token68(token: &str) -> bool {
    let body = token.trim_end_matches('=');
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn read(values: &[&'static str]) -> Result<String, BearerError> {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(AUTHORIZATION, HeaderValue::from_static(value));
        }
        bearer_token(&headers).map(str::to_owned)
    }

    #[test]
    fn reads_rfc_6750_headers() {
        assert_eq!(read(&["Bearer abc.def.ghi"]), Ok("abc.def.ghi".into()));
        assert_eq!(read(&["bearer abc"]), Ok("abc".into()));
        assert_eq!(read(&["BEARER a-b_c~d+e/f=="]), Ok("a-b_c~d+e/f==".into()));
        assert_eq!(read(&[]), Err(BearerError::Missing));
        assert_eq!(read(&["Basic dXNlcjpwYXNz"]), Err(BearerError::Missing));
        assert_eq!(read(&["Bearer"]), Err(BearerError::Malformed));
        assert_eq!(read(&["Bearer "]), Err(BearerError::Malformed));
        assert_eq!(read(&["Bearer  abc"]), Err(BearerError::Malformed));
        assert_eq!(read(&["Bearer abc def"]), Err(BearerError::Malformed));
        assert_eq!(read(&["Bearer a=b"]), Err(BearerError::Malformed));
        assert_eq!(read(&["Bearer ==="]), Err(BearerError::Malformed));
        assert_eq!(read(&["Bearer a", "Bearer b"]), Err(BearerError::Malformed));
    }
}
