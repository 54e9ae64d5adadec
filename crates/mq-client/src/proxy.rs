//! HTTP proxies: which proxy (if any) a request goes through, and the `CONNECT` handshake
//! that opens a tunnel for `https` endpoints.
//!
//! The rules are curl's and reqwest's, evaluated by hyper-util's proxy
//! [`Matcher`](hyper_util::client::proxy::matcher::Matcher): `HTTPS_PROXY` for `https`
//! endpoints, `HTTP_PROXY` for `http` endpoints, `ALL_PROXY` for both when the specific one is
//! unset (each upper-case first, then lower-case), and `NO_PROXY`: comma-separated host
//! names (a name matches itself and its subdomains; a leading dot is ignored), IP addresses,
//! CIDR networks, or `*` for every host. A proxy URL is `http://[user[:password]@]host[:port]`
//! (port 80 when absent) or the same without the scheme; the user info, percent-decoded,
//! becomes `Proxy-Authorization: Basic`.
//!
//! Through a proxy, an `http` endpoint gets absolute-form requests
//! (`POST http://host/topics/T/messages HTTP/1.1`, RFC 9112 §3.2.2); the signature still
//! covers the path and query only (PROTOCOL.md §2.2), which the proxy forwards unchanged. An
//! `https` endpoint gets a `CONNECT host:port` tunnel (RFC 9110 §9.3.6) with TLS verified end
//! to end against the endpoint's name: the proxy sees no request.

use crate::error::{ConfigError, Error};
use http::HeaderValue;
use http::header::PROXY_AUTHORIZATION;
use hyper_util::client::proxy::matcher::Matcher;
use std::fmt;
use std::future::poll_fn;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;

/// The environment variables a [`Proxy::from_env`] reads, in the order they are looked up
/// (the first set one of each group wins): `https` endpoints, `http` endpoints, both, and the
/// exclusion list.
pub const PROXY_ENV_VARS: [&[&str]; 4] = [
    &["HTTPS_PROXY", "https_proxy"],
    &["HTTP_PROXY", "http_proxy"],
    &["ALL_PROXY", "all_proxy"],
    &["NO_PROXY", "no_proxy"],
];

/// Which HTTP proxy to use for which endpoint.
///
/// The rules are curl's and reqwest's (hyper-util's proxy matcher): `HTTPS_PROXY` for
/// `https` endpoints, `HTTP_PROXY` for `http` endpoints, `ALL_PROXY` for both when the
/// specific one is unset (each upper-case first, then lower-case), and `NO_PROXY`:
/// comma-separated host names (a name matches itself and its subdomains; a leading dot is
/// ignored), IP addresses, CIDR networks, or `*` for every host. A proxy URL is
/// `http://[user[:password]@]host[:port]` (port 80 when absent) or the same without the
/// scheme; the user info, percent-decoded, becomes `Proxy-Authorization: Basic`.
///
/// [`ClientBuilder`](crate::ClientBuilder) reads the environment by default
/// ([`Proxy::from_env`]); [`ClientBuilder::proxy`](crate::ClientBuilder::proxy) sets one, and
/// [`ClientBuilder::no_proxy`](crate::ClientBuilder::no_proxy) turns proxies off. `Debug`
/// never shows the password:
///
/// ```
/// use mq_client::Proxy;
///
/// let proxy = Proxy::new("http://alice:s3cret@proxy.internal:3128")?
///     .with_no_proxy("localhost, .svc.cluster.local, 10.0.0.0/8");
/// let shown = format!("{proxy:?}");
/// assert!(shown.contains("proxy.internal:3128") && !shown.contains("s3cret"));
///
/// // Only http:// proxies are supported.
/// assert!(Proxy::new("socks5://proxy.internal:1080").is_err());
/// # Ok::<(), mq_client::Error>(())
/// ```
#[derive(Clone)]
pub struct Proxy {
    https: Option<String>,
    http: Option<String>,
    no: String,
    /// The entries of `no` with a port ([`PortEntry`]); the matcher has the others.
    no_ports: Arc<[PortEntry]>,
    matcher: Arc<Matcher>,
}

/// A `NO_PROXY` entry with a port, `host:port` or `[IPv6]:port`: that host (a name: with
/// its subdomains) on that port only, as Go's and Python's readers of the variable take it
/// (the official Python SDK's among them). hyper-util's matcher has no ports: it took the
/// whole entry for a host name, which no request matched.
#[derive(Clone, Debug, PartialEq, Eq)]
struct PortEntry {
    /// Lower case, without brackets or a leading `.`.
    host: String,
    port: u16,
}

impl PortEntry {
    /// `entry` (trimmed) as a port entry; `None` for one without a port (an IPv6 address
    /// without brackets has no port).
    fn parse(entry: &str) -> Option<Self> {
        let (host, port) = entry.rsplit_once(':')?;
        let port = port.parse::<u16>().ok()?;
        let host = match host.strip_prefix('[') {
            Some(v6) => v6.strip_suffix(']')?,
            None if host.contains(':') => return None,
            None => host.trim_start_matches('.'),
        };
        (!host.is_empty()).then(|| Self {
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    /// Whether a request to `host` (as [`http::Uri::host`] gives it) on `port` is excluded.
    fn matches(&self, host: &str, port: u16) -> bool {
        if port != self.port {
            return false;
        }
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if let (Ok(a), Ok(b)) = (host.parse::<IpAddr>(), self.host.parse::<IpAddr>()) {
            return a == b;
        }
        let host = host.to_ascii_lowercase();
        host == self.host
            || host
                .strip_suffix(self.host.as_str())
                .is_some_and(|sub| sub.ends_with('.'))
    }
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy")
            .field("https", &self.https.as_deref().map(redacted))
            .field("http", &self.http.as_deref().map(redacted))
            .field("no_proxy", &self.no)
            .finish()
    }
}

impl Proxy {
    /// One proxy for every endpoint: `http://[user[:password]@]host[:port]` (port 80 by
    /// default; the scheme may be left out).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] with [`ConfigError::InvalidProxy`] when `url` is not such a URL
    /// (another scheme such as `https` or `socks5`, a path or query, no host).
    pub fn new(url: &str) -> Result<Self, Error> {
        check_url(url, "the proxy URL")?;
        Ok(Self::build(
            Some(url.to_owned()),
            Some(url.to_owned()),
            String::new(),
        ))
    }

    /// The proxies the conventional environment variables name ([`PROXY_ENV_VARS`]), read
    /// now; `None` when none of `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` (or their lower-case
    /// forms) is set to a non-empty value. In a CGI program (`REQUEST_METHOD` set),
    /// `HTTP_PROXY` is ignored: a request's `Proxy:` header can set it ("httpoxy").
    ///
    /// # Errors
    ///
    /// [`Error::Config`] with [`ConfigError::InvalidProxy`] (naming the variable) when a set
    /// variable is not an `http://` proxy URL (`ALL_PROXY` only when `HTTPS_PROXY` or
    /// `HTTP_PROXY` is unset: shadowed by both, it is not read), [`ConfigError::EnvVarNotUnicode`] when one
    /// is not valid UTF-8: a client does not silently go direct when the environment asks
    /// for a proxy it cannot use.
    pub fn from_env() -> Result<Option<Self>, Error> {
        Self::from_lookup(|name| Ok(crate::credentials::env_var(name)?))
    }

    /// [`Proxy::from_env`] over any variable lookup.
    fn from_lookup(
        lookup: impl Fn(&'static str) -> Result<Option<String>, Error>,
    ) -> Result<Option<Self>, Error> {
        // In a CGI program `HTTP_PROXY` may come from a request's `Proxy:` header
        // ("httpoxy"): ignored there, as reqwest does.
        // (Set to a value that is not UTF-8 counts as set.)
        let cgi = lookup("REQUEST_METHOD").map_or(true, |v| v.is_some());
        // The first variable of `names` set to a non-blank value: its name and value.
        let first = |names: &[&'static str]| -> Result<Option<(&'static str, String)>, Error> {
            for name in names {
                if cgi && *name == "HTTP_PROXY" {
                    continue;
                }
                match lookup(name)? {
                    Some(value) if !value.trim().is_empty() => {
                        return Ok(Some((name, value.trim().to_owned())));
                    }
                    _ => {}
                }
            }
            Ok(None)
        };
        let [https_vars, http_vars, all_vars, no_vars] = PROXY_ENV_VARS;
        let https = first(https_vars)?;
        let http = first(http_vars)?;
        // ALL_PROXY fills only the slots HTTPS_PROXY and HTTP_PROXY leave empty: shadowed by
        // both it is never used, so it is not read (a desktop's `all_proxy=socks5://…` beside
        // `https_proxy` and `http_proxy` of the same local proxy is common).
        let all = match (&https, &http) {
            (Some(_), Some(_)) => None,
            _ => first(all_vars)?,
        };
        // The error names the variable that holds the value, in the case it was set.
        for (name, value) in [&https, &http, &all].into_iter().flatten() {
            check_url(value, name)?;
        }
        let [https, http, all] = [https, http, all].map(|v| v.map(|(_, value)| value));
        if https.is_none() && http.is_none() && all.is_none() {
            return Ok(None);
        }
        let no = first(no_vars)?.map(|(_, value)| value).unwrap_or_default();
        Ok(Some(Self::build(
            https.or_else(|| all.clone()),
            http.or(all),
            no,
        )))
    }

    /// Excludes hosts from the proxy, `NO_PROXY` style: comma-separated host names (each
    /// matching itself and its subdomains), IP addresses, CIDR networks, or `*`; a name or
    /// address with a port (`broker:8080`, `[::1]:9876`) excludes it on that port only.
    /// Replaces an earlier list.
    pub fn with_no_proxy(self, list: &str) -> Self {
        Self::build(self.https, self.http, list.to_owned())
    }

    fn build(https: Option<String>, http: Option<String>, no: String) -> Self {
        let (mut no_ports, mut others) = (Vec::new(), Vec::new());
        for entry in no.split(',').map(str::trim) {
            match PortEntry::parse(entry) {
                Some(with_port) => no_ports.push(with_port),
                None => others.push(entry),
            }
        }
        let mut builder = Matcher::builder().no(others.join(","));
        if let Some(h) = &https {
            builder = builder.https(h.as_str());
        }
        if let Some(h) = &http {
            builder = builder.http(h.as_str());
        }
        Self {
            https,
            http,
            no,
            no_ports: no_ports.into(),
            matcher: Arc::new(builder.build()),
        }
    }

    /// The proxy a request to `uri` goes through, `None` to go direct.
    pub(crate) fn route(&self, uri: &http::Uri) -> Option<ProxyRoute> {
        // `*` excludes every host, IP literals too (the matcher applies it to names only).
        if self.no.split(',').any(|entry| entry.trim() == "*") {
            return None;
        }
        let default_port = if uri.scheme() == Some(&http::uri::Scheme::HTTPS) {
            443
        } else {
            80
        };
        let (host, port) = (uri.host()?, uri.port_u16().unwrap_or(default_port));
        if self.no_ports.iter().any(|entry| entry.matches(host, port)) {
            return None;
        }
        let intercept = self.matcher.intercept(uri)?;
        let proxy = intercept.uri();
        Some(ProxyRoute {
            host: proxy
                .host()?
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port: proxy.port_u16().unwrap_or(80),
            authorization: intercept.basic_auth().cloned(),
        })
    }
}

/// Refuses what is not `[http://][user[:password]@]host[:port][/]`; the error says which
/// part is wrong (scheme, host, port, path or query, quoting that part) and shows the URL
/// as [`redacted`] does. The user info (everything before the last `@`, as `redacted` cuts
/// it) is never quoted.
fn check_url(url: &str, what: &str) -> Result<(), Error> {
    let invalid = |reason: String| -> Error {
        ConfigError::InvalidProxy {
            what: what.to_owned(),
            url: redacted(url),
            reason,
        }
        .into()
    };
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    match scheme {
        None => {}
        Some(s) if s.eq_ignore_ascii_case("http") => {}
        Some(s)
            if !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b)) =>
        {
            return Err(invalid(format!(
                "scheme {s:?} is not supported: only http:// proxies are (an https endpoint \
                 is reached through one with CONNECT)"
            )));
        }
        Some(_) => return Err(invalid("not a URL: no valid scheme before ://".into())),
    }
    let after_user = rest.rsplit_once('@').map_or(rest, |(_, after)| after);
    let (host_port, tail) =
        after_user.split_at(after_user.find(['/', '?', '#']).unwrap_or(after_user.len()));
    let (host, port) = match host_port.rsplit_once(':') {
        // An IPv6 literal's colons are inside its brackets.
        Some((host, port)) if !port.contains(']') => (host, Some(port)),
        _ => (host_port, None),
    };
    if host.is_empty() || host == "[]" {
        return Err(invalid(
            "no host: expected http://[user[:password]@]host[:port]".into(),
        ));
    }
    if let Some(port) = port
        && !port.parse::<u16>().is_ok_and(|p| p > 0)
    {
        return Err(invalid(format!(
            "port {port:?} is not a number from 1 to 65535"
        )));
    }
    match tail {
        "" | "/" => {}
        _ if tail.starts_with('?') || tail.starts_with("/?") => {
            return Err(invalid("a proxy URL has no query".into()));
        }
        _ if tail.starts_with('#') || tail.starts_with("/#") => {
            return Err(invalid("a proxy URL has no fragment".into()));
        }
        _ => {
            let path = tail.split(['?', '#']).next().unwrap_or(tail);
            return Err(invalid(format!("a proxy URL has no path (found {path:?})")));
        }
    }
    // What the URL parser reads must be what was checked above: a `/`, `?` or `#` in the
    // user info would end the authority there (`http::Uri` drops a `#` fragment without a
    // trace, while the proxy matcher then takes the user name for the proxy's host), and an
    // `@` would split it elsewhere (the proxy matcher cuts the user info at the first `@`,
    // the check above and `redacted` at the last: `u:pa@ss` was sent as `u:pa`).
    let user_info_ends_authority = rest
        .rsplit_once('@')
        .is_some_and(|(user_info, _)| user_info.contains(['/', '?', '#', '@']));
    let uri: http::Uri = url
        .parse()
        .map_err(|e| invalid(format!("not a URL: {e}")))?;
    if user_info_ends_authority || uri.query().is_some() || !matches!(uri.path(), "" | "/") {
        return Err(invalid(
            "the user info holds '/', '?', '#' or '@': percent-encode them (%2F, %3F, %23, %40)"
                .into(),
        ));
    }
    Ok(())
}

/// `url` with the password of its user info replaced by `***`: `user:***@host` for a
/// plain `user:password` (a user of letters, digits and `-._~`, a password not empty),
/// else the whole user info is `***` (a token alone, `http://TOKEN@host`, or a mistyped
/// separator, `u;pw`, `u%3Apw`, `u@pw`, may be the secret).
pub(crate) fn redacted(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (format!("{s}://"), r),
        None => (String::new(), url),
    };
    let plain = |user: &str| {
        !user.is_empty()
            && user
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
    };
    match rest.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, password)) if plain(user) && !password.is_empty() => {
                format!("{scheme}{user}:***@{host}")
            }
            _ => format!("{scheme}***@{host}"),
        },
        None => url.to_owned(),
    }
}

/// The proxy one request goes through: part of the pool key (connections through different
/// proxies, or with different proxy credentials, are never shared).
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct ProxyRoute {
    pub(crate) host: String,
    pub(crate) port: u16,
    /// `Basic …` from the proxy URL's user info (a sensitive header value).
    pub(crate) authorization: Option<HeaderValue>,
}

impl fmt::Debug for ProxyRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyRoute")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("authorization", &self.authorization.as_ref().map(|_| "***"))
            .finish()
    }
}

impl ProxyRoute {
    /// Adds `Proxy-Authorization` to an absolute-form request's headers.
    pub(crate) fn authorize(&self, headers: &mut http::HeaderMap) {
        if let Some(auth) = &self.authorization {
            headers.insert(PROXY_AUTHORIZATION, auth.clone());
        }
    }
}

/// A `CONNECT` tunnel through an HTTP proxy, for [`ConnectTarget::tunnel`](crate::ConnectTarget::tunnel):
/// the proxy's address and, when its URL had user info, the `Proxy-Authorization` to send
/// (never shown by `Debug`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tunnel {
    proxy: ProxyRoute,
}

impl Tunnel {
    /// The proxy's host name or IP literal (without brackets).
    pub fn proxy_host(&self) -> &str {
        &self.proxy.host
    }

    /// The proxy's TCP port.
    pub fn proxy_port(&self) -> u16 {
        self.proxy.port
    }
}

impl From<&ProxyRoute> for Tunnel {
    fn from(route: &ProxyRoute) -> Self {
        Self {
            proxy: route.clone(),
        }
    }
}

/// The proxy answered `CONNECT` with a status other than 2xx (407: proxy authentication
/// required or refused, 403: the proxy's policy forbids the destination, 502/503/504: the
/// proxy could not reach it). Carried as the inner error of the `io::Error` a runtime's
/// `connect` returns; the transport turns it into
/// [`TransportErrorKind::ProxyRefused`](crate::TransportErrorKind::ProxyRefused).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the proxy refused CONNECT with status {status}")]
pub struct TunnelRefused {
    /// The proxy's status code.
    pub status: u16,
}

/// The proxy's answer to `CONNECT` was not HTTP, too long, or had bytes after its head.
#[derive(Clone, Debug, thiserror::Error)]
#[error("invalid answer from the proxy to CONNECT: {0}")]
pub(crate) struct InvalidTunnelAnswer(&'static str);

/// Longest `CONNECT` answer head read (status line and headers).
const MAX_TUNNEL_ANSWER: usize = 8 * 1024;

impl Tunnel {
    /// Asks the proxy on `io` (a fresh connection to it) for a tunnel to `host:port` and reads
    /// its answer; on `Ok` the connection carries bytes to and from the destination.
    pub(crate) async fn establish<I>(&self, io: &mut I, host: &str, port: u16) -> io::Result<()>
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin,
    {
        let authority = crate::transport::authority(host, port);
        let mut request =
            format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n").into_bytes();
        if let Some(auth) = &self.proxy.authorization {
            request.extend_from_slice(b"Proxy-Authorization: ");
            request.extend_from_slice(auth.as_bytes());
            request.extend_from_slice(b"\r\n");
        }
        request.extend_from_slice(b"\r\n");
        write_all(io, &request).await?;
        let mut answer = Vec::with_capacity(256);
        let mut chunk = [0u8; 512];
        loop {
            let n = read(io, &mut chunk).await?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the proxy closed the connection before answering CONNECT",
                ));
            }
            answer.extend_from_slice(&chunk[..n]);
            if let Some(status) = tunnel_answer(&answer)? {
                return match status {
                    200..=299 => Ok(()),
                    status => Err(io::Error::other(TunnelRefused { status })),
                };
            }
        }
    }
}

/// The status of a complete `CONNECT` answer head, `None` while incomplete.
fn tunnel_answer(answer: &[u8]) -> io::Result<Option<u16>> {
    let invalid = |why| io::Error::new(io::ErrorKind::InvalidData, InvalidTunnelAnswer(why));
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(answer) {
        Ok(httparse::Status::Complete(len)) => {
            let status = response.code.ok_or_else(|| invalid("no status"))?;
            // A destination speaks only after the client's TLS hello: nothing may follow a
            // successful answer's head.
            if (200..300).contains(&status) && len != answer.len() {
                return Err(invalid("bytes after the answer"));
            }
            Ok(Some(status))
        }
        Ok(httparse::Status::Partial) if answer.len() > MAX_TUNNEL_ANSWER => {
            Err(invalid("answer head too long"))
        }
        Ok(httparse::Status::Partial) => Ok(None),
        Err(_) => Err(invalid("not an HTTP response")),
    }
}

async fn write_all<I: hyper::rt::Write + Unpin>(io: &mut I, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        let n = poll_fn(|cx| Pin::new(&mut *io).poll_write(cx, buf)).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        buf = &buf[n..];
    }
    poll_fn(|cx| Pin::new(&mut *io).poll_flush(cx)).await
}

async fn read<I: hyper::rt::Read + Unpin>(io: &mut I, buf: &mut [u8]) -> io::Result<usize> {
    let mut read_buf = hyper::rt::ReadBuf::new(buf);
    poll_fn(|cx| Pin::new(&mut *io).poll_read(cx, read_buf.unfilled())).await?;
    Ok(read_buf.filled().len())
}

/// Whether the answer to a request forwarded by a proxy (absolute-form) is the proxy's own
/// refusal: 407 (RFC 9110 §15.5.8; only proxies send it), or any 4xx without
/// `x-mq-request-id`, which every answer of the service carries (PROTOCOL.md §6) — tinyproxy
/// answers wrong credentials 401 and a filtered request 403. A 5xx without it is not taken
/// for a refusal: a forwarding proxy may send one after the request reached the endpoint
/// (502 when the endpoint's connection broke), so it must not be resent as "never sent".
pub(crate) fn is_proxy_refusal(status: http::StatusCode, headers: &http::HeaderMap) -> bool {
    status == http::StatusCode::PROXY_AUTHENTICATION_REQUIRED
        || (status.is_client_error() && !headers.contains_key("x-mq-request-id"))
}

/// Whether a failed connection attempt was a proxy's refusal of `CONNECT`, and its status.
pub(crate) fn refused_status(error: &io::Error) -> Option<u16> {
    find_inner::<TunnelRefused>(error).map(|r| r.status)
}

/// Whether a failed connection attempt got an answer to `CONNECT` that is not HTTP.
pub(crate) fn invalid_answer(error: &io::Error) -> bool {
    find_inner::<InvalidTunnelAnswer>(error).is_some()
}

fn find_inner<E: std::error::Error + 'static>(error: &io::Error) -> Option<&E> {
    crate::error::io_causes(error).find_map(|e| e.downcast_ref::<E>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(vars: &[(&str, &str)]) -> Result<Option<Proxy>, Error> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Proxy::from_lookup(|name| Ok(vars.get(name).cloned()))
    }

    fn route(proxy: &Proxy, uri: &str) -> Option<(String, u16, bool)> {
        proxy
            .route(&uri.parse().expect("uri"))
            .map(|r| (r.host, r.port, r.authorization.is_some()))
    }

    #[test]
    fn environment_picks_the_proxy_by_scheme_upper_case_first() {
        let p = env(&[
            ("HTTPS_PROXY", "http://secure:3128"),
            ("https_proxy", "http://ignored:1"),
            ("http_proxy", "plain:8080"),
            ("ALL_PROXY", "http://all:9"),
        ])
        .expect("valid")
        .expect("set");
        assert_eq!(
            route(&p, "https://mq.example.com"),
            Some(("secure".into(), 3128, false))
        );
        assert_eq!(
            route(&p, "http://mq.example.com"),
            Some(("plain".into(), 8080, false))
        );
        let all = env(&[("all_proxy", "http://u:p@all")])
            .expect("valid")
            .expect("set");
        assert_eq!(route(&all, "https://x"), Some(("all".into(), 80, true)));
        assert_eq!(route(&all, "http://x"), Some(("all".into(), 80, true)));
        assert!(env(&[("NO_PROXY", "*")]).expect("valid").is_none());
        // httpoxy: a CGI program's HTTP_PROXY may come from a request header.
        assert!(
            env(&[("REQUEST_METHOD", "GET"), ("HTTP_PROXY", "http://evil:1")])
                .expect("valid")
                .is_none()
        );
        assert!(env(&[("HTTP_PROXY", "  ")]).expect("valid").is_none());
    }

    #[test]
    fn an_all_proxy_both_specific_variables_shadow_is_not_read() {
        // The usual desktop proxy setup: http:// for HTTPS_PROXY and HTTP_PROXY, socks5://
        // for ALL_PROXY (which this client cannot use). build() failed with InvalidProxy
        // naming ALL_PROXY, which no request would have used.
        let p = env(&[
            ("https_proxy", "http://127.0.0.1:7890"),
            ("http_proxy", "http://127.0.0.1:7890"),
            ("all_proxy", "socks5://127.0.0.1:7890"),
        ])
        .expect("ALL_PROXY is shadowed")
        .expect("set");
        for uri in ["https://mq.example.com", "http://mq.example.com"] {
            assert_eq!(route(&p, uri), Some(("127.0.0.1".into(), 7890, false)));
        }
        // When it fills a slot, it is still checked: a client does not go direct (or
        // through SOCKS) when the environment asks for a proxy it cannot use.
        let e = env(&[
            ("HTTPS_PROXY", "http://127.0.0.1:7890"),
            ("ALL_PROXY", "socks5://127.0.0.1:7890"),
        ])
        .expect_err("ALL_PROXY fills the http slot");
        assert!(e.to_string().contains("ALL_PROXY"), "{e}");
        // The error names the variable as it was set (it named the upper-case form, which
        // the user may not have set at all).
        let e = env(&[("https_proxy", "socks5://127.0.0.1:7890")]).expect_err("refused");
        assert!(e.to_string().contains("https_proxy"), "{e}");
        assert!(!e.to_string().contains("HTTPS_PROXY"), "{e}");
    }

    #[test]
    fn no_proxy_matches_domains_subdomains_addresses_and_networks() {
        let p = env(&[
            ("HTTP_PROXY", "http://proxy:3128"),
            (
                "no_proxy",
                "example.com, .internal,10.0.0.0/8,::1, 127.0.0.1",
            ),
        ])
        .expect("valid")
        .expect("set");
        for direct in [
            "http://example.com",
            "http://mq.example.com:8080",
            "http://a.b.internal",
            "http://10.1.2.3",
            "http://[::1]:8080",
            "http://127.0.0.1:9876",
        ] {
            assert_eq!(route(&p, direct), None, "{direct}");
        }
        for proxied in [
            "http://notexample.com",
            "http://example.org",
            "http://11.0.0.1",
            "http://127.0.0.2",
        ] {
            assert!(route(&p, proxied).is_some(), "{proxied}");
        }
        // With a port, that host on that port only (a name with its subdomains); the
        // scheme's port when the URI has none.
        let p = Proxy::new("proxy:1").expect("proxy").with_no_proxy(
            "broker:8080, .corp.example:9876, 10.0.0.5:80, [::1]:9000, [0:0:0:0:0:0:0:2]:1, Mixed.Case:7",
        );
        for direct in [
            "http://broker:8080",
            "http://BROKER:8080",
            "http://mq.broker:8080",
            "http://corp.example:9876",
            "https://a.corp.example:9876",
            "http://10.0.0.5",
            "http://10.0.0.5:80",
            "http://[::1]:9000",
            "http://[::2]:1",
            "http://mixed.case:7",
        ] {
            assert_eq!(route(&p, direct), None, "{direct}");
        }
        for proxied in [
            "http://broker:9090",
            "http://broker",
            "http://notbroker:8080",
            "http://corp.example:9877",
            "https://10.0.0.5",
            "http://10.0.0.6:80",
            "http://[::1]:9001",
        ] {
            assert!(route(&p, proxied).is_some(), "{proxied}");
        }
        assert_eq!(
            PortEntry::parse("::1"),
            None,
            "an IPv6 address without brackets"
        );
        assert_eq!(PortEntry::parse("host:http"), None);
        let star = Proxy::new("proxy:1")
            .expect("proxy")
            .with_no_proxy("x.org, *");
        for uri in ["https://anything", "http://127.0.0.1:8080", "http://[::1]"] {
            assert_eq!(route(&star, uri), None, "{uri}");
        }
    }

    #[test]
    fn a_hash_in_the_user_name_is_refused_too() {
        // Without the check the client went to host "u" (port 80) and `Debug` showed
        // `***@proxy:3128`.
        let e = Proxy::new("http://u#x:hunter2@proxy:3128").expect_err("refused");
        let shown = format!("{e} {e:?}");
        assert!(shown.contains("percent-encode them"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn an_at_sign_in_the_user_info_is_refused() {
        // The proxy matcher splits the user info at the first '@' (the URL parser and
        // `redacted` at the last): `u:pa@ss` was sent as `Basic u:pa` and an e-mail user
        // name as the user alone, while `Debug` showed `u:***@proxy:3128`.
        for url in [
            "http://u:pa@ss@proxy:3128",
            "http://john@corp.example:hunter2@proxy:8080",
            "u:hunt@er2@proxy:3128",
        ] {
            let e = Proxy::new(url).expect_err(url);
            let shown = format!("{e} {e:?}");
            assert!(shown.contains("%40"), "{shown}");
            assert!(
                !shown.contains("hunter2") && !shown.contains("er2"),
                "{shown}"
            );
            let e = env(&[("HTTPS_PROXY", url)]).expect_err(url);
            assert!(e.to_string().contains("HTTPS_PROXY"), "{e}");
        }
        // Percent-encoded, it is the password's (and the user name's) own character.
        let p = Proxy::new("http://john%40corp.example:pa%40ss@proxy:8080").expect("encoded");
        let r = p
            .route(&"https://mq:443".parse().expect("uri"))
            .expect("route");
        // base64("john@corp.example:pa@ss")
        assert_eq!(
            r.authorization.as_ref().expect("auth"),
            "Basic am9obkBjb3JwLmV4YW1wbGU6cGFAc3M="
        );
    }

    #[test]
    fn unusable_proxy_urls_are_config_errors_without_the_password() {
        // Each says which part is wrong, quoting it; Display and Debug show the URL with
        // `***` for the password.
        for (url, reason) in [
            (
                "https://u:hunter2@proxy:443",
                r#"scheme "https" is not supported: only http:// proxies are"#,
            ),
            (
                "socks5://u:hunter2@proxy:1080",
                r#"scheme "socks5" is not supported"#,
            ),
            (
                "http://u:hunter2@proxy:3128/path?x=1",
                r#"a proxy URL has no path (found "/path")"#,
            ),
            (
                "http://u:hunter2@proxy:3128/?x=1",
                "a proxy URL has no query",
            ),
            (
                "http://u:hunter2@proxy:3128#top",
                "a proxy URL has no fragment",
            ),
            ("http://u:hunter2@:3128", "no host"),
            ("http://u:hunter2@", "no host"),
            ("http://", "no host"),
            (
                "http://u:hunter2@proxy:99999",
                r#"port "99999" is not a number from 1 to 65535"#,
            ),
            (
                "http://u:hunter2@proxy:http",
                r#"port "http" is not a number"#,
            ),
            ("http://u:hunter2@proxy:0", r#"port "0" is not a number"#),
            ("http://u:hunter2@pro xy:3128", "not a URL"),
            // A password with an unencoded '/', '?' or '#' is never quoted.
            ("http://u:hunt/er2@proxy:3128", "percent-encode them"),
            ("http://u:hunt?er2@proxy:3128", "percent-encode them"),
            // A '#' too: the URL parser dropped it as a fragment and the client went to
            // host "u" (the user name), port 80, while `Debug` showed proxy:3128.
            ("http://u:hunt#er2@proxy:3128", "percent-encode them"),
            ("u:hunter2@proxy:80x", r#"port "80x""#),
        ] {
            let e = Proxy::new(url).expect_err(url);
            let shown = format!("{e} {e:?}");
            assert!(shown.contains(reason), "{url}: {shown}");
            assert!(
                !shown.contains("hunter2") && !shown.contains("hunt"),
                "{url}: {shown}"
            );
            assert!(
                !url.contains('@') || shown.contains("u:***@"),
                "{url}: {shown}"
            );
        }
        let e = Proxy::new("http://u:hunter2@proxy:99999").expect_err("port");
        assert_eq!(
            e.to_string(),
            r#"invalid configuration: the proxy URL "http://u:***@proxy:99999": port "99999" is not a number from 1 to 65535"#
        );
        // What is accepted: no scheme, a port or none, a trailing slash, an IPv6 literal.
        for url in [
            "proxy:3128",
            "http://proxy",
            "http://u:p@proxy:3128/",
            "http://[::1]:3128",
            "HTTP://proxy:1",
        ] {
            Proxy::new(url).expect(url);
        }
        let e = env(&[("HTTPS_PROXY", "socks5://u:hunter2@proxy:1080")]).expect_err("socks");
        let shown = format!("{e} {e:?}");
        assert!(shown.contains("HTTPS_PROXY"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn credentials_become_basic_auth_and_never_show() {
        let p = Proxy::new("http://alice:op%40en@proxy:3128").expect("proxy");
        let r = p
            .route(&"https://mq:443".parse().expect("uri"))
            .expect("route");
        // base64("alice:op@en")
        assert_eq!(
            r.authorization.as_ref().expect("auth"),
            "Basic YWxpY2U6b3BAZW4="
        );
        let mut headers = http::HeaderMap::new();
        r.authorize(&mut headers);
        assert!(headers[PROXY_AUTHORIZATION].is_sensitive());
        for shown in [
            format!("{p:?}"),
            format!("{r:?}"),
            format!("{:?}", Tunnel::from(&r)),
        ] {
            assert!(
                !shown.contains("op%40en") && !shown.contains("YWxp"),
                "{shown}"
            );
        }
    }

    #[test]
    fn the_proxys_own_refusals_of_forwarded_requests() {
        let service = {
            let mut h = http::HeaderMap::new();
            h.insert(
                "x-mq-request-id",
                HeaderValue::from_static("5DAEF2B9463541AD6E04490F"),
            );
            h
        };
        let none = http::HeaderMap::new();
        assert!(is_proxy_refusal(
            http::StatusCode::PROXY_AUTHENTICATION_REQUIRED,
            &none
        ));
        assert!(is_proxy_refusal(
            http::StatusCode::PROXY_AUTHENTICATION_REQUIRED,
            &service
        ));
        for status in [401, 403, 404] {
            let status = http::StatusCode::from_u16(status).expect("status");
            assert!(is_proxy_refusal(status, &none), "{status}");
            assert!(!is_proxy_refusal(status, &service), "{status}");
        }
        for status in [500, 502, 503] {
            let status = http::StatusCode::from_u16(status).expect("status");
            assert!(!is_proxy_refusal(status, &none), "{status}");
        }
    }

    #[test]
    fn connect_answers() {
        assert_eq!(tunnel_answer(b"HTTP/1.1 200 Connection").expect("ok"), None);
        assert_eq!(
            tunnel_answer(b"HTTP/1.0 200 Connection established\r\n\r\n").expect("ok"),
            Some(200)
        );
        assert_eq!(
            tunnel_answer(
                b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 3\r\n\r\nabc"
            )
            .expect("ok"),
            Some(407)
        );
        for bad in [
            &b"SSH-2.0-OpenSSH\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\n\r\n\x16\x03\x01",
        ] {
            let e = tunnel_answer(bad).expect_err("invalid");
            assert!(invalid_answer(&e), "{e}");
        }
        let long = [b'a'; MAX_TUNNEL_ANSWER + 1];
        let mut head = b"HTTP/1.1 200 OK\r\nX: ".to_vec();
        head.extend_from_slice(&long);
        assert!(invalid_answer(&tunnel_answer(&head).expect_err("too long")));
        let refused = io::Error::other(TunnelRefused { status: 407 });
        assert_eq!(refused_status(&refused), Some(407));
        assert_eq!(refused_status(&io::Error::other("x")), None);
    }
}
