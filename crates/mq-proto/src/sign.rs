//! Request signing (PROTOCOL §2).
//!
//! Every request carries `Authorization: MQ {AccessKeyId}:{Signature}`, where the signature is
//! the base64 HMAC-SHA1 of a *string to sign* built from the method, three headers, every
//! `x-mq-*` header and the raw request-target. The functions here are pure: they compute, they
//! never read the clock or touch the network. The same code signs (client side) and verifies
//! (server side, in constant time).
//!
//! ```
//! use http::{HeaderMap, HeaderValue, Method};
//! use mq_proto::sign;
//!
//! let mut headers = HeaderMap::new();
//! headers.insert("content-type", HeaderValue::from_static("text/xml;charset=UTF-8"));
//! headers.insert("x-mq-version", HeaderValue::from_static("2015-06-06"));
//! headers.insert("date", HeaderValue::from_static("Thu, 07 Mar 2024 18:49:58 GMT"));
//! let resource = "/topics/TopicA/messages?ns=MQ_INST_1234567890_BXhFbQyM";
//!
//! let sts = sign::string_to_sign(&Method::POST, &headers, resource);
//! assert_eq!(
//!     sts,
//!     "POST\n\ntext/xml;charset=UTF-8\nThu, 07 Mar 2024 18:49:58 GMT\n\
//!      x-mq-version:2015-06-06\n/topics/TopicA/messages?ns=MQ_INST_1234567890_BXhFbQyM"
//! );
//! let sig = sign::signature("ExampleSecretKey1234567890abcd", &sts);
//! assert_eq!(
//!     sign::authorization("LTAI5tExampleAKID", &sig),
//!     "MQ LTAI5tExampleAKID:lJuIZ5gd5/M2MttkmpMfJ2PizkQ="
//! );
//! assert!(sign::verify_signature("ExampleSecretKey1234567890abcd", &sts, &sig));
//! ```

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderValue, Method, header};
use sha1::Sha1;
use smallvec::SmallVec;

type HmacSha1 = Hmac<Sha1>;

/// Prefix of every signed header name (compared case-insensitively).
pub const MQ_HEADER_PREFIX: &str = "x-mq-";

/// Name of the protocol version header.
pub const VERSION_HEADER: &str = "x-mq-version";

/// The protocol version sent in [`VERSION_HEADER`].
pub const PROTOCOL_VERSION: &str = "2015-06-06";

/// Name of the (unsigned) STS token header.
pub const SECURITY_TOKEN_HEADER: &str = "security-token";

/// Largest allowed distance between a request's `Date` and the server clock (PROTOCOL §2.1).
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(15 * 60);

/// An AccessKey pair, optionally with an STS security token.
///
/// `Debug` never shows the secret or the token.
///
/// ```
/// use mq_proto::sign::Credentials;
/// let c = Credentials::new("LTAI5tExampleAKID", "very-secret").with_security_token("STS.tok");
/// assert_eq!(c.access_key_id(), "LTAI5tExampleAKID");
/// assert_eq!(c.access_key_secret(), "very-secret");
/// assert_eq!(c.security_token(), Some("STS.tok"));
/// let shown = format!("{c:?}");
/// assert!(!shown.contains("very-secret") && !shown.contains("STS.tok"));
/// ```
#[derive(Clone)]
pub struct Credentials {
    access_key_id: String,
    access_key_secret: String,
    security_token: Option<String>,
    /// The secret prepared for signing (derived from `access_key_secret`).
    signing_key: SigningKey,
}

impl Credentials {
    /// A key pair without a security token. Any text is taken here (this is plain data,
    /// and a server configures its keys with it too); the client refuses an empty id or
    /// secret where it takes credentials (`ConfigError::EmptyCredentials` of `mq-client`).
    pub fn new(access_key_id: impl Into<String>, access_key_secret: impl Into<String>) -> Self {
        let access_key_secret = access_key_secret.into();
        Self {
            access_key_id: access_key_id.into(),
            signing_key: SigningKey::new(&access_key_secret),
            access_key_secret,
            security_token: None,
        }
    }

    /// Adds an STS security token (sent in the `security-token` header, not signed).
    #[must_use]
    pub fn with_security_token(mut self, token: impl Into<String>) -> Self {
        self.security_token = Some(token.into());
        self
    }

    /// The AccessKey id.
    pub fn access_key_id(&self) -> &str {
        &self.access_key_id
    }

    /// The AccessKey secret.
    pub fn access_key_secret(&self) -> &str {
        &self.access_key_secret
    }

    /// The STS security token, if any.
    pub fn security_token(&self) -> Option<&str> {
        self.security_token.as_deref()
    }

    /// The AccessKey secret prepared for signing (see [`SigningKey`]).
    pub fn signing_key(&self) -> &SigningKey {
        &self.signing_key
    }
}

/// An AccessKey secret prepared for HMAC-SHA1 (PROTOCOL §2.4): the key's inner and outer
/// blocks are hashed once, here, so that each signature or verification with it hashes only
/// the string to sign (two SHA-1 blocks fewer per request than keying from the secret).
///
/// Cloning copies the prepared state (no allocation). `Debug` never shows the secret.
///
/// ```
/// use mq_proto::sign::{self, SigningKey};
/// let key = SigningKey::new("ExampleSecretKey1234567890abcd");
/// let sts = "GET\n\n\nThu, 07 Mar 2024 18:49:58 GMT\nx-mq-version:2015-06-06\n/topics/T/messages";
/// assert_eq!(key.signature(sts), sign::signature("ExampleSecretKey1234567890abcd", sts));
/// assert!(key.verify(sts, &key.signature(sts)));
/// assert!(!key.verify(sts, "AAAA"));
/// assert_eq!(format!("{key:?}"), "SigningKey(<redacted>)");
/// ```
#[derive(Clone)]
pub struct SigningKey(HmacSha1);

impl SigningKey {
    /// Prepares `secret`.
    pub fn new(secret: &str) -> Self {
        // HMAC accepts keys of any length, so `new_from_slice` cannot fail; the fallback
        // keeps this function panic-free regardless.
        Self(
            HmacSha1::new_from_slice(secret.as_bytes())
                .unwrap_or_else(|_| <HmacSha1 as hmac::digest::KeyInit>::new(&Default::default())),
        )
    }

    /// The MAC of `string_to_sign`, ready to finalize or verify.
    fn mac(&self, string_to_sign: &str) -> HmacSha1 {
        let mut mac = self.0.clone();
        mac.update(string_to_sign.as_bytes());
        mac
    }

    /// Base64 (standard alphabet, padded) of HMAC-SHA1 of `string_to_sign` with this key.
    pub fn signature(&self, string_to_sign: &str) -> String {
        BASE64.encode(self.mac(string_to_sign).finalize().into_bytes())
    }

    /// Checks a base64 signature against the expected one, in constant time; `false` for
    /// anything that is not the exact base64 of the right HMAC (including undecodable
    /// base64).
    pub fn verify(&self, string_to_sign: &str, provided_b64: &str) -> bool {
        let Ok(provided) = BASE64.decode(provided_b64.as_bytes()) else {
            return false;
        };
        self.mac(string_to_sign).verify_slice(&provided).is_ok()
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(<redacted>)")
    }
}

impl From<&str> for SigningKey {
    fn from(secret: &str) -> Self {
        Self::new(secret)
    }
}

impl From<String> for SigningKey {
    fn from(secret: String) -> Self {
        Self::new(&secret)
    }
}

impl From<&SigningKey> for SigningKey {
    fn from(key: &SigningKey) -> Self {
        key.clone()
    }
}

impl AsRef<SigningKey> for SigningKey {
    fn as_ref(&self) -> &SigningKey {
        self
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("access_key_secret", &"<redacted>")
            .field(
                "security_token",
                &self.security_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// The outcome of signing: the string that was signed, the signature and the header value.
///
/// Keep the string to sign around when debugging `SignatureDoesNotMatch`: the server builds
/// the same string from what it received, and the two must be byte-for-byte equal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedRequestInfo {
    /// The exact string that was signed.
    pub string_to_sign: String,
    /// Base64 HMAC-SHA1 signature.
    pub signature: String,
    /// Value of the `Authorization` header (`MQ id:signature`).
    pub authorization: String,
}

/// Signs a request given its method, headers (as they will be sent) and raw request-target.
///
/// ```
/// use http::{HeaderMap, HeaderValue, Method};
/// use mq_proto::sign::{self, Credentials};
/// let mut h = HeaderMap::new();
/// h.insert("x-mq-version", HeaderValue::from_static("2015-06-06"));
/// h.insert("date", HeaderValue::from_static("Thu, 07 Mar 2024 18:49:58 GMT"));
/// let creds = Credentials::new("LTAI5tExampleAKID", "ExampleSecretKey1234567890abcd");
/// let info = sign::sign_request(&creds, &Method::GET, &h,
///     "/topics/TopicA/messages?consumer=GID_a&numOfMessages=1");
/// assert!(info.string_to_sign.starts_with("GET\n\n\nThu, 07 Mar 2024"));
/// assert_eq!(info.authorization, format!("MQ LTAI5tExampleAKID:{}", info.signature));
/// ```
pub fn sign_request(
    credentials: &Credentials,
    method: &Method,
    headers: &HeaderMap,
    resource: &str,
) -> SignedRequestInfo {
    let string_to_sign = string_to_sign(method, headers, resource);
    let signature = credentials.signing_key().signature(&string_to_sign);
    let authorization = authorization(credentials.access_key_id(), &signature);
    SignedRequestInfo {
        string_to_sign,
        signature,
        authorization,
    }
}

/// The string to sign of a built request (method, headers and `path?query` of its URI).
///
/// Useful to compare with the server's view when a request is rejected with
/// `SignatureDoesNotMatch`.
pub fn request_string_to_sign<B>(request: &http::Request<B>) -> String {
    let resource = request
        .uri()
        .path_and_query()
        .map_or_else(|| request.uri().path(), |pq| pq.as_str());
    string_to_sign(request.method(), request.headers(), resource)
}

/// Trims HTTP optional whitespace (spaces and tabs) around a value.
fn trim_ows(s: &str) -> &str {
    s.trim_matches(|c| c == ' ' || c == '\t')
}

/// Appends a header value's text, trimmed; bytes that are not UTF-8 become U+FFFD (the
/// fast check first: values are almost always ASCII).
fn push_value(out: &mut String, value: &[u8]) {
    match std::str::from_utf8(value) {
        Ok(text) => out.push_str(trim_ows(text)),
        Err(_) => out.push_str(trim_ows(&String::from_utf8_lossy(value))),
    }
}

/// Builds the string to sign (PROTOCOL §2.2–2.4).
///
/// * line 1: the method;
/// * lines 2–4: the values of `Content-MD5`, `Content-Type` and `Date` as present (after
///   trimming spaces and tabs), or empty;
/// * then, for every header whose lower-cased name starts with `x-mq-`, sorted by name,
///   `name:value\n` (a header sent several times yields one line per value, in order);
/// * then `resource`, byte-for-byte (the raw request-target: path plus `?query`).
///
/// Header names are matched case-insensitively (an [`HeaderMap`] stores them lower-cased).
pub fn string_to_sign(method: &Method, headers: &HeaderMap, resource: &str) -> String {
    // One pass over the headers: the first value of each of the three fixed ones (what
    // `HeaderMap::get` gives), every value of the `x-mq-` ones (a request has a few: kept on
    // the stack).
    let (mut md5, mut content_type, mut date) = (None, None, None);
    let mut mq: SmallVec<[(&str, &HeaderValue); 8]> = SmallVec::new();
    for (name, value) in headers {
        let slot = if *name == header::CONTENT_TYPE {
            &mut content_type
        } else if *name == header::DATE {
            &mut date
        } else if name.as_str() == "content-md5" {
            &mut md5
        } else {
            if name.as_str().starts_with(MQ_HEADER_PREFIX) {
                mq.push((name.as_str(), value));
            }
            continue;
        };
        slot.get_or_insert(value);
    }
    // Stable sort: several values of one header keep their order.
    mq.sort_by(|a, b| a.0.cmp(b.0));

    let mq_len: usize = mq.iter().map(|(n, v)| n.len() + v.len() + 2).sum();
    let mut out = String::with_capacity(method.as_str().len() + 96 + mq_len + resource.len());
    out.push_str(method.as_str());
    out.push('\n');
    for value in [md5, content_type, date] {
        if let Some(value) = value {
            push_value(&mut out, value.as_bytes());
        }
        out.push('\n');
    }
    for (name, value) in mq {
        out.push_str(name);
        out.push(':');
        push_value(&mut out, value.as_bytes());
        out.push('\n');
    }
    out.push_str(resource);
    out
}

/// Base64 (standard alphabet, padded) of HMAC-SHA1(`secret`, `string_to_sign`); see
/// [`SigningKey`] to sign many strings with one secret.
pub fn signature(secret: &str, string_to_sign: &str) -> String {
    SigningKey::new(secret).signature(string_to_sign)
}

/// The `Authorization` header value: `MQ {access_key_id}:{signature}`.
pub fn authorization(access_key_id: &str, signature: &str) -> String {
    let mut s = String::with_capacity(4 + access_key_id.len() + signature.len());
    s.push_str("MQ ");
    s.push_str(access_key_id);
    s.push(':');
    s.push_str(signature);
    s
}

/// Checks a base64 signature against the expected one, in constant time.
///
/// Returns `false` for anything that is not the exact base64 of the right HMAC (including
/// undecodable base64).
pub fn verify_signature(secret: &str, string_to_sign: &str, provided_b64: &str) -> bool {
    SigningKey::new(secret).verify(string_to_sign, provided_b64)
}

/// Latest time an HTTP date can express (9999-12-31T23:59:59Z).
const MAX_HTTP_DATE_SECS: u64 = 253_402_300_799;

/// Formats a time as an RFC 1123 `Date` value, e.g. `Thu, 07 Mar 2024 18:49:58 GMT`.
///
/// Sub-second precision is dropped. Times before 1970 or after 9999 are clamped to that range
/// (the format cannot express them).
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// let t = UNIX_EPOCH + Duration::from_secs(1_709_837_398);
/// assert_eq!(mq_proto::sign::format_http_date(t), "Thu, 07 Mar 2024 18:49:58 GMT");
/// ```
pub fn format_http_date(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        .min(MAX_HTTP_DATE_SECS);
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(secs))
}

/// Parses an HTTP `Date` value (RFC 1123; the obsolete RFC 850 and asctime forms are accepted
/// too). Surrounding spaces and tabs are ignored. Returns `None` when unparsable.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// let t = mq_proto::sign::parse_http_date("Thu, 07 Mar 2024 18:49:58 GMT").unwrap();
/// assert_eq!(t, UNIX_EPOCH + Duration::from_secs(1_709_837_398));
/// assert!(mq_proto::sign::parse_http_date("yesterday").is_none());
/// ```
pub fn parse_http_date(s: &str) -> Option<SystemTime> {
    httpdate::parse_http_date(trim_ows(s)).ok()
}

/// Distance between two instants, whichever comes first.
pub(crate) fn abs_diff(a: SystemTime, b: SystemTime) -> Duration {
    match a.duration_since(b) {
        Ok(d) => d,
        Err(e) => e.duration(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn mq_headers_are_sorted_and_trimmed() {
        let mut h = HeaderMap::new();
        h.insert("x-mq-version", HeaderValue::from_static("2015-06-06"));
        h.insert("X-MQ-A-Test", HeaderValue::from_static("  v1 "));
        h.insert("security-token", HeaderValue::from_static("tok"));
        h.insert("date", HeaderValue::from_static("D"));
        let s = string_to_sign(&Method::GET, &h, "/r?a=b");
        assert_eq!(
            s,
            "GET\n\n\nD\nx-mq-a-test:v1\nx-mq-version:2015-06-06\n/r?a=b"
        );
    }

    #[test]
    fn verify_rejects_garbage() {
        let sig = signature("k", "s");
        assert!(verify_signature("k", "s", &sig));
        assert!(!verify_signature("k", "s", "not base64!"));
        assert!(!verify_signature("k", "s", ""));
        assert!(!verify_signature("k2", "s", &sig));
    }

    #[test]
    fn dates_clamp_instead_of_panicking() {
        let before = UNIX_EPOCH - Duration::from_secs(10);
        assert_eq!(format_http_date(before), "Thu, 01 Jan 1970 00:00:00 GMT");
        let far = UNIX_EPOCH + Duration::from_secs(MAX_HTTP_DATE_SECS + 1000);
        assert_eq!(format_http_date(far), "Fri, 31 Dec 9999 23:59:59 GMT");
        assert!(parse_http_date(" Thu, 07 Mar 2024 18:49:58 GMT ").is_some());
    }

    #[test]
    fn debug_redacts() {
        let c = Credentials::new("id", "s3cr3t").with_security_token("t0k3n");
        let d = format!("{c:?}");
        assert!(d.contains("id") && d.contains("<redacted>"));
        assert!(!d.contains("s3cr3t") && !d.contains("t0k3n"));
    }
}
