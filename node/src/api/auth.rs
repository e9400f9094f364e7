//! Request authentication: AWS Signature Version 4 and CORS.
//!
//! Every request must carry a well-formed SigV4 `Authorization` header (or presigned query
//! parameters): none → `MissingAuthenticationTokenException`, a malformed one →
//! `IncompleteSignatureException`, both forms → `InvalidSignatureException`. Signatures are
//! verified only when credentials are configured (`[auth]`): an unknown access key id →
//! `UnrecognizedClientException`, a wrong signature, scope or an expired date →
//! `InvalidSignatureException`. Without `[auth]` any credentials are accepted.

use axum::http::{HeaderMap, HeaderValue, Method, Uri};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use spate_proto::kinesis::{ErrorKind, KinesisError, KinesisResult};

/// The one signing algorithm.
const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// Largest accepted clock difference between the request date and now.
const MAX_SKEW_SECS: i64 = 15 * 60;

/// Credentials requests must be signed with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

/// The parts of an `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    pub access_key_id: String,
    /// `yyyymmdd`.
    pub date: String,
    pub region: String,
    pub service: String,
    pub signed_headers: Vec<String>,
    pub signature: String,
    /// `X-Amz-Date` (or `Date`) of the request.
    pub amz_date: String,
}

fn err(kind: ErrorKind, msg: impl Into<String>) -> KinesisError {
    KinesisError::new(kind, msg)
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Checks that the request is signed in a well-formed way; returns the header signature
/// (`None` for presigned query authentication).
pub fn check_present(headers: &HeaderMap, uri: &Uri) -> KinesisResult<Option<Signature>> {
    let query = uri.query().unwrap_or("");
    let has_query = query
        .split('&')
        .any(|p| p.split('=').next() == Some("X-Amz-Algorithm"));
    let auth = header(headers, "authorization");
    match (auth, has_query) {
        (None, false) => Err(err(
            ErrorKind::MissingAuthenticationToken,
            "Missing Authentication Token",
        )),
        (Some(_), true) => Err(err(
            ErrorKind::InvalidSignature,
            "Found both 'X-Amz-Algorithm' as a query-string param and 'Authorization' as HTTP header.",
        )),
        (None, true) => {
            let missing: Vec<&str> = ["X-Amz-Credential", "X-Amz-Signature", "X-Amz-SignedHeaders", "X-Amz-Date"]
                .into_iter()
                .filter(|k| !query.split('&').any(|p| p.split('=').next() == Some(*k)))
                .collect();
            if missing.is_empty() {
                Ok(None)
            } else {
                Err(err(
                    ErrorKind::IncompleteSignature,
                    missing
                        .iter()
                        .map(|m| format!("AWS query-string parameters must include '{m}'."))
                        .collect::<Vec<_>>()
                        .join(" "),
                ))
            }
        }
        (Some(auth), false) => parse(auth, headers).map(Some),
    }
}

/// Parses an `Authorization` header.
pub fn parse(auth: &str, headers: &HeaderMap) -> KinesisResult<Signature> {
    let incomplete = |what: String| {
        err(
            ErrorKind::IncompleteSignature,
            format!("{what} Authorization={auth}"),
        )
    };
    let Some(rest) = auth.trim().strip_prefix(ALGORITHM) else {
        return Err(incomplete(format!(
            "Authorization header requires the {ALGORITHM} algorithm."
        )));
    };
    let mut credential = None;
    let mut signed = None;
    let mut signature = None;
    for part in rest.split(',') {
        let Some((k, v)) = part.trim().split_once('=') else {
            continue;
        };
        match k.trim() {
            "Credential" => credential = Some(v.trim()),
            "SignedHeaders" => signed = Some(v.trim()),
            "Signature" => signature = Some(v.trim()),
            _ => {}
        }
    }
    let amz_date = header(headers, "x-amz-date").or_else(|| header(headers, "date"));
    let mut problems = Vec::new();
    for (name, value) in [
        ("Credential", credential),
        ("Signature", signature),
        ("SignedHeaders", signed),
    ] {
        if value.is_none_or(str::is_empty) {
            problems.push(format!("Authorization header requires '{name}' parameter."));
        }
    }
    if amz_date.is_none() {
        problems.push(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header."
                .to_string(),
        );
    }
    if !problems.is_empty() {
        return Err(incomplete(problems.join(" ")));
    }
    let credential = credential.unwrap_or_default();
    let scope: Vec<&str> = credential.split('/').collect();
    if scope.len() != 5 || scope[4] != "aws4_request" || scope.iter().any(|s| s.is_empty()) {
        return Err(incomplete(format!(
            "Credential should be scoped to a valid region and service, of the form <key>/<date>/<region>/<service>/aws4_request; got '{credential}'."
        )));
    }
    Ok(Signature {
        access_key_id: scope[0].to_string(),
        date: scope[1].to_string(),
        region: scope[2].to_string(),
        service: scope[3].to_string(),
        signed_headers: signed
            .unwrap_or_default()
            .split(';')
            .map(|h| h.trim().to_ascii_lowercase())
            .collect(),
        signature: signature.unwrap_or_default().to_ascii_lowercase(),
        amz_date: amz_date.unwrap_or_default().to_string(),
    })
}

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    match HmacSha256::new_from_slice(key) {
        Ok(mut m) => {
            m.update(data);
            m.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

/// `yyyymmddThhmmssZ` → epoch seconds.
fn parse_amz_date(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (h, mi, se) = (num(9..11)?, num(11..13)?, num(13..15)?);
    // Days from civil (Howard Hinnant's algorithm).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + mi * 60 + se)
}

/// The canonical URI: every path segment URI-encoded once (`/` for an empty path).
fn canonical_uri(path: &str) -> String {
    if path.is_empty() {
        return "/".to_string();
    }
    path.split('/')
        .map(|seg| {
            let decoded = percent_decode(seg);
            uri_encode(&decoded)
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

fn uri_encode(bytes: &[u8]) -> String {
    let mut out = String::new();
    for &c in bytes {
        if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b'~') {
            out.push(c as char);
        } else {
            out.push_str(&format!("%{c:02X}"));
        }
    }
    out
}

fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                uri_encode(&percent_decode(k)),
                uri_encode(&percent_decode(v)),
            )
        })
        .collect();
    pairs.sort();
    pairs
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Verifies a header signature against `creds`, `region` and the request.
#[allow(clippy::too_many_arguments)]
pub fn verify(
    sig: &Signature,
    creds: &Credentials,
    region: &str,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    now_secs: i64,
) -> KinesisResult<()> {
    if sig.access_key_id != creds.access_key_id {
        return Err(err(
            ErrorKind::UnrecognizedClient,
            "The security token included in the request is invalid.",
        ));
    }
    if sig.service != "kinesis" || sig.region != region {
        return Err(err(
            ErrorKind::InvalidSignature,
            format!(
                "Credential should be scoped to a valid region and service: expected {region}/kinesis, got {}/{}.",
                sig.region, sig.service
            ),
        ));
    }
    let Some(when) = parse_amz_date(&sig.amz_date) else {
        return Err(err(
            ErrorKind::IncompleteSignature,
            format!(
                "Date must be in ISO-8601 'basic format'. Got '{}'.",
                sig.amz_date
            ),
        ));
    };
    if (now_secs - when).abs() > MAX_SKEW_SECS {
        return Err(err(
            ErrorKind::InvalidSignature,
            format!(
                "Signature expired: {} is not within 15 minutes of the server time.",
                sig.amz_date
            ),
        ));
    }
    if !sig.amz_date.starts_with(&sig.date) {
        return Err(err(
            ErrorKind::InvalidSignature,
            "Date in Credential scope does not match the request date.",
        ));
    }
    let expected = expected_signature(sig, creds, method, uri, headers, body);
    if expected != sig.signature {
        return Err(err(
            ErrorKind::InvalidSignature,
            "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.",
        ));
    }
    Ok(())
}

/// The signature of a request under `sig`'s scope, signed headers and date (hex).
pub fn expected_signature(
    sig: &Signature,
    creds: &Credentials,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> String {
    let mut canonical_headers = String::new();
    for name in &sig.signed_headers {
        let value = if name == "host" {
            header(headers, "host")
                .map(str::to_string)
                .or_else(|| uri.authority().map(|a| a.as_str().to_string()))
        } else {
            let values: Vec<&str> = headers
                .get_all(name.as_str())
                .iter()
                .filter_map(|v: &HeaderValue| v.to_str().ok())
                .collect();
            (!values.is_empty()).then(|| values.join(","))
        };
        let value = value.unwrap_or_default();
        let collapsed = value.split_whitespace().collect::<Vec<_>>().join(" ");
        canonical_headers.push_str(&format!("{name}:{collapsed}\n"));
    }
    let payload_hash = match header(headers, "x-amz-content-sha256") {
        Some(h) => h.to_string(),
        None => hex::encode(Sha256::digest(body)),
    };
    let canonical = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        method.as_str(),
        canonical_uri(uri.path()),
        canonical_query(uri.query().unwrap_or("")),
        canonical_headers,
        sig.signed_headers.join(";"),
        payload_hash
    );
    let scope = format!("{}/{}/{}/aws4_request", sig.date, sig.region, sig.service);
    let to_sign = format!(
        "{ALGORITHM}\n{}\n{scope}\n{}",
        sig.amz_date,
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let k_date = hmac(
        format!("AWS4{}", creds.secret_access_key).as_bytes(),
        sig.date.as_bytes(),
    );
    let k_region = hmac(&k_date, sig.region.as_bytes());
    let k_service = hmac(&k_region, sig.service.as_bytes());
    let k_signing = hmac(&k_service, b"aws4_request");
    hex::encode(hmac(&k_signing, to_sign.as_bytes()))
}
/// Now, epoch seconds, in cluster time ([`crate::cluster::clock`]): a node whose own clock
/// stepped does not reject every signed request as skewed.
pub fn now_secs() -> i64 {
    (crate::cluster::clock::now_ms() / 1000) as i64
}

/// Adds the CORS headers every response carries.
pub fn cors_headers(headers: &mut HeaderMap) {
    headers.insert("access-control-allow-origin", HeaderValue::from_static("*"));
    headers.insert(
        "access-control-expose-headers",
        HeaderValue::from_static(
            "x-amzn-RequestId,x-amzn-ErrorType,x-amz-id-2,x-amzn-ErrorMessage,Date",
        ),
    );
}

/// Answers a CORS preflight (`OPTIONS`): allows the requested method and headers.
pub fn preflight_headers(request: &HeaderMap, out: &mut HeaderMap) {
    cors_headers(out);
    let methods = request
        .get("access-control-request-method")
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static("GET, POST, PUT, DELETE, OPTIONS"));
    out.insert("access-control-allow-methods", methods);
    if let Some(h) = request.get("access-control-request-headers") {
        out.insert("access-control-allow-headers", h.clone());
    }
    out.insert("access-control-max-age", HeaderValue::from_static("172800"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amz_dates() {
        assert_eq!(parse_amz_date("19700101T000000Z"), Some(0));
        assert_eq!(parse_amz_date("20150830T123600Z"), Some(1_440_938_160));
        assert_eq!(parse_amz_date("2015-08-30"), None);
    }

    #[test]
    fn presence_and_shape() {
        let uri: Uri = "/".parse().unwrap();
        let mut h = HeaderMap::new();
        let e = check_present(&h, &uri).unwrap_err();
        assert_eq!(e.kind, ErrorKind::MissingAuthenticationToken);
        h.insert(
            "authorization",
            HeaderValue::from_static("AWS4-HMAC-SHA256 Credential=a/b/c/d/aws4_request"),
        );
        let e = check_present(&h, &uri).unwrap_err();
        assert_eq!(e.kind, ErrorKind::IncompleteSignature);
        assert!(
            e.message.contains("'Signature'")
                && e.message.contains("'SignedHeaders'")
                && e.message.contains("X-Amz-Date"),
            "{}",
            e.message
        );
        let q: Uri = "/?X-Amz-Algorithm=AWS4-HMAC-SHA256".parse().unwrap();
        let e = check_present(&h, &q).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidSignature);
    }

    #[test]
    fn verifies_a_botocore_signature() {
        // Signed by botocore 1.40 (SigV4Auth) for AKID "AKIDEXAMPLE", secret
        // "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", region us-east-1.
        let body = br#"{"StreamName":"s"}"#;
        let mut h = HeaderMap::new();
        h.insert("host", HeaderValue::from_static("127.0.0.1:4567"));
        h.insert(
            "content-type",
            HeaderValue::from_static("application/x-amz-json-1.1"),
        );
        h.insert(
            "x-amz-target",
            HeaderValue::from_static("Kinesis_20131202.DescribeStream"),
        );
        h.insert("x-amz-date", HeaderValue::from_static("20250101T000000Z"));
        let creds = Credentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
        };
        let uri: Uri = "/".parse().unwrap();
        let now = parse_amz_date("20250101T000000Z").unwrap();
        // Compute the signature with our own implementation, then check that a changed
        // body or key is refused.
        let mut sig = Signature {
            access_key_id: "AKIDEXAMPLE".into(),
            date: "20250101".into(),
            region: "us-east-1".into(),
            service: "kinesis".into(),
            signed_headers: vec![
                "content-type".into(),
                "host".into(),
                "x-amz-date".into(),
                "x-amz-target".into(),
            ],
            signature: String::new(),
            amz_date: "20250101T000000Z".into(),
        };
        let e = verify(
            &sig,
            &creds,
            "us-east-1",
            &Method::POST,
            &uri,
            &h,
            body,
            now,
        )
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidSignature);
        sig.signature = BOTOCORE_SIGNATURE.into();
        verify(
            &sig,
            &creds,
            "us-east-1",
            &Method::POST,
            &uri,
            &h,
            body,
            now,
        )
        .unwrap();
        let e = verify(
            &sig,
            &creds,
            "us-east-1",
            &Method::POST,
            &uri,
            &h,
            b"{}",
            now,
        )
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidSignature);
        let e = verify(
            &sig,
            &creds,
            "us-east-1",
            &Method::POST,
            &uri,
            &h,
            body,
            now + 3600,
        )
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidSignature);
        sig.access_key_id = "OTHER".into();
        let e = verify(
            &sig,
            &creds,
            "us-east-1",
            &Method::POST,
            &uri,
            &h,
            body,
            now,
        )
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::UnrecognizedClient);
    }

    const BOTOCORE_SIGNATURE: &str =
        "b36fceafca1180bded600bc294c948db68a0699dec065ee843f25d27d68927c1";
}
