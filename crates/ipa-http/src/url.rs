//! URL handling the rest of the stack relies on: splitting off userinfo (it becomes basic auth,
//! never a `Host` header), resolving redirect targets, and redacting URLs for logs, errors and
//! results.

use std::fmt;

use crate::HttpError;

/// Query parameters whose values are credentials (compared case-insensitively): Swift temp
/// URLs, S3/GCS presigned URLs, and the agent's own token.
const SECRET_QUERY_KEYS: &[&str] = &[
    "temp_url_sig",
    "sig",
    "signature",
    "x-amz-signature",
    "x-amz-credential",
    "x-amz-security-token",
    "x-goog-signature",
    "x-goog-credential",
    "token",
    "agent_token",
    "access_token",
    "auth_token",
    "password",
    "passwd",
    "secret",
    "key",
];

/// A URL with its credentials hidden: userinfo becomes `***@` and secret query values `***`.
///
/// Works on any string (unparseable input is redacted as far as its shape allows), so it can be
/// applied to whatever a user sent before it is echoed.
pub fn redact(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(i) => (&url[..i + 3], &url[i + 3..]),
        None => ("", url),
    };
    let auth_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(auth_end);
    let authority = match authority.rfind('@') {
        Some(i) => format!("***@{}", &authority[i + 1..]),
        None => authority.to_string(),
    };
    let (before_frag, frag) = match tail.find('#') {
        Some(i) => tail.split_at(i),
        None => (tail, ""),
    };
    let tail = match before_frag.split_once('?') {
        Some((path, query)) => {
            let q: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((k, _)) if is_secret_key(k) => format!("{k}=***"),
                    _ => pair.to_string(),
                })
                .collect();
            format!("{path}?{}", q.join("&"))
        }
        None => before_frag.to_string(),
    };
    format!("{scheme}{authority}{tail}{frag}")
}

fn is_secret_key(k: &str) -> bool {
    let k = percent_decode(k).to_ascii_lowercase();
    SECRET_QUERY_KEYS.contains(&k.as_str())
}

/// `Display` of a URL through [`redact`], for `tracing` fields: `url = %Redacted(&u)`.
#[derive(Debug, Clone, Copy)]
pub struct Redacted<'a>(pub &'a str);

impl fmt::Display for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact(self.0))
    }
}

/// Percent-decoding (`%41` → `A`); invalid escapes are kept as they are.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Credentials from a URL's userinfo (decoded).
#[derive(Clone, PartialEq, Eq)]
pub struct UserInfo {
    /// User name.
    pub user: String,
    /// Password (may be empty).
    pub password: String,
}

impl fmt::Debug for UserInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserInfo").field("user", &"***").field("password", &"***").finish()
    }
}

impl UserInfo {
    /// The `Authorization: Basic …` value.
    pub fn basic(&self) -> String {
        use base64::Engine;
        let raw = format!("{}:{}", self.user, self.password);
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(raw))
    }
}

/// A parsed `http(s)://` URL.
#[derive(Clone)]
pub struct Target {
    /// `https` (else `http`).
    pub https: bool,
    /// Host without IPv6 brackets.
    pub host: String,
    /// Port (default per scheme).
    pub port: u16,
    /// `host[:port]` as written, without userinfo: the `Host` header.
    pub authority: String,
    /// Path and query (fragment dropped); `/` when empty.
    pub path: String,
    /// Userinfo, if the URL carried one.
    pub userinfo: Option<UserInfo>,
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target")
            .field("https", &self.https)
            .field("authority", &self.authority)
            .field("path", &redact(&self.path))
            .field("userinfo", &self.userinfo.as_ref().map(|_| "***"))
            .finish()
    }
}

impl Target {
    /// Parse `url`; only `http` and `https` are accepted.
    pub fn parse(url: &str) -> Result<Self, HttpError> {
        let bad = |reason: &str| HttpError::Url { url: redact(url), reason: reason.to_string() };
        let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("no scheme"))?;
        let https = match scheme.to_ascii_lowercase().as_str() {
            "http" => false,
            "https" => true,
            _ => return Err(bad("scheme must be http or https")),
        };
        let auth_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(auth_end);
        let (userinfo, hostport) = match authority.rfind('@') {
            Some(i) => {
                let (u, p) = match authority[..i].split_once(':') {
                    Some((u, p)) => (u, p),
                    None => (&authority[..i], ""),
                };
                (
                    Some(UserInfo { user: percent_decode(u), password: percent_decode(p) }),
                    &authority[i + 1..],
                )
            }
            None => (None, authority),
        };
        if hostport.is_empty() {
            return Err(bad("no host"));
        }
        let a: http::uri::Authority = hostport.parse().map_err(|_| bad("invalid host"))?;
        let host = a.host().trim_start_matches('[').trim_end_matches(']').to_string();
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = match a.port() {
            Some(p) => p.as_u16(),
            None if hostport.ends_with(':') => return Err(bad("empty port")),
            None => {
                if https {
                    443
                } else {
                    80
                }
            }
        };
        let tail = tail.split('#').next().unwrap_or("");
        let path = if tail.is_empty() {
            "/".to_string()
        } else if tail.starts_with('?') {
            format!("/{tail}")
        } else {
            tail.to_string()
        };
        path.parse::<http::uri::PathAndQuery>().map_err(|_| bad("invalid path"))?;
        Ok(Self { https, host, port, authority: a.as_str().to_string(), path, userinfo })
    }

    /// Scheme, host and port: credentials are only ever sent back to the same origin.
    pub fn same_origin(&self, other: &Target) -> bool {
        self.https == other.https
            && self.host.eq_ignore_ascii_case(&other.host)
            && self.port == other.port
    }

    /// The URL without userinfo (`scheme://authority/path`).
    pub fn without_userinfo(&self) -> String {
        format!("{}://{}{}", if self.https { "https" } else { "http" }, self.authority, self.path)
    }
}

/// Resolve a redirect `Location` against the URL that answered (RFC 3986 §5.2, the cases
/// servers send: absolute, scheme-relative, absolute-path, query-only and relative paths).
pub fn resolve(base: &Target, location: &str) -> String {
    let location = location.trim();
    let scheme = if base.https { "https" } else { "http" };
    if location.contains("://") {
        return location.to_string();
    }
    if let Some(rest) = location.strip_prefix("//") {
        return format!("{scheme}://{rest}");
    }
    let origin = format!("{scheme}://{}", base.authority);
    if location.starts_with('/') {
        return format!("{origin}{location}");
    }
    let base_path = base.path.split('?').next().unwrap_or("/");
    if location.starts_with('?') {
        return format!("{origin}{base_path}{location}");
    }
    let dir = match base_path.rfind('/') {
        Some(i) => &base_path[..=i],
        None => "/",
    };
    let mut segs: Vec<&str> = Vec::new();
    let joined = format!("{dir}{location}");
    let (p, q) = match joined.split_once('?') {
        Some((p, q)) => (p.to_string(), Some(q.to_string())),
        None => (joined.clone(), None),
    };
    let trailing = p.ends_with('/') || p.ends_with("/.") || p.ends_with("/..");
    for s in p.split('/') {
        match s {
            "" | "." => {}
            ".." => {
                segs.pop();
            }
            s => segs.push(s),
        }
    }
    let mut path = format!("/{}", segs.join("/"));
    if trailing && path != "/" {
        path.push('/');
    }
    match q {
        Some(q) => format!("{origin}{path}?{q}"),
        None => format!("{origin}{path}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_and_signatures_are_redacted() {
        assert_eq!(redact("http://user:pass@host:8080/x.raw"), "http://***@host:8080/x.raw");
        assert_eq!(
            redact("https://swift/v1/c/o?temp_url_sig=abc123&temp_url_expires=99"),
            "https://swift/v1/c/o?temp_url_sig=***&temp_url_expires=99"
        );
        assert_eq!(
            redact("https://s3/b/k?X-Amz-Credential=AK&X-Amz-Signature=f00#frag"),
            "https://s3/b/k?X-Amz-Credential=***&X-Amz-Signature=***#frag"
        );
        assert_eq!(redact("http://h/x?a=1"), "http://h/x?a=1");
        assert_eq!(redact("not a url with p@ss"), "***@ss");
        assert_eq!(redact("user:pw@host/path"), "***@host/path");
    }

    #[test]
    fn userinfo_is_split_off_and_decoded() {
        let t = Target::parse("http://us%40er:p%3Ass@[::1]:81/a/b?c=d#f").unwrap();
        assert_eq!(t.authority, "[::1]:81");
        assert_eq!(t.host, "::1");
        assert_eq!(t.port, 81);
        assert_eq!(t.path, "/a/b?c=d");
        let u = t.userinfo.unwrap();
        assert_eq!((u.user.as_str(), u.password.as_str()), ("us@er", "p:ss"));
        assert_eq!(u.basic(), "Basic dXNAZXI6cDpzcw==");
        let t = Target::parse("https://host").unwrap();
        assert_eq!((t.port, t.path.as_str(), t.authority.as_str()), (443, "/", "host"));
        for bad in ["ftp://h/x", "http://", "http://u:p@/x", "h/x", "http://h:/x"] {
            let e = Target::parse(bad).unwrap_err().to_string();
            assert!(!e.contains("u:p"), "{e}");
        }
        let e = Target::parse("gopher://admin:hunter2@h/").unwrap_err().to_string();
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn redirect_locations_resolve_against_the_answering_url() {
        let b = Target::parse("http://a:1/d/e/f.raw?x=1").unwrap();
        assert_eq!(resolve(&b, "https://b/z"), "https://b/z");
        assert_eq!(resolve(&b, "//c:2/z"), "http://c:2/z");
        assert_eq!(resolve(&b, "/z?q"), "http://a:1/z?q");
        assert_eq!(resolve(&b, "g.raw"), "http://a:1/d/e/g.raw");
        assert_eq!(resolve(&b, "../g"), "http://a:1/d/g");
        assert_eq!(resolve(&b, "../../../../g"), "http://a:1/g");
        assert_eq!(resolve(&b, "?y=2"), "http://a:1/d/e/f.raw?y=2");
        assert_eq!(resolve(&b, "./"), "http://a:1/d/e/");
    }

    #[test]
    fn origins_compare_scheme_host_and_port() {
        let a = Target::parse("http://u:p@Host/x").unwrap();
        assert!(a.same_origin(&Target::parse("http://host:80/y").unwrap()));
        assert!(!a.same_origin(&Target::parse("https://host/y").unwrap()));
        assert!(!a.same_origin(&Target::parse("http://host:81/y").unwrap()));
        assert!(!a.same_origin(&Target::parse("http://other/y").unwrap()));
        assert_eq!(a.without_userinfo(), "http://Host/x");
    }
}
