//! The workspace's one outbound HTTP/TLS stack.
//!
//! Image and checksum downloads (`ipa-image`), the Ironic API client (`ipa-ironic`), vendor
//! firmware fetches and `ipactl` all send their requests through [`HttpClient`], configured from
//! one [`TlsPolicy`]. It is hyper's HTTP/1.1 connection API over tokio and rustls (ring):
//!
//! * **Userinfo is credentials, never a header**: `http://user:pass@host/x` is sent with
//!   `Host: host` and `Authorization: Basic …`; an explicit authorization wins over it.
//! * **Redirects** (301/302/303/307/308) are followed up to [`DEFAULT_MAX_REDIRECTS`] hops;
//!   headers such as `Range` are kept, credentials are sent only to the first URL's origin.
//! * **Proxies** per scheme with `no_proxy`; `CONNECT` tunnels for `https`; proxy userinfo
//!   becomes `Proxy-Authorization`.
//! * **Redaction**: every URL in an [`HttpError`] has been through [`redact`] (userinfo and
//!   signature query values such as Swift's `temp_url_sig` hidden), and [`Redacted`] does the
//!   same for log fields.
//!
//! On top of it, [`download`] is the download policy everything that fetches a file shares
//! (images, checksum files, config drives, vendor firmware): URL failover, retries, HTTP Range
//! resume, read timeouts and a maximum duration.

mod client;
pub mod download;
mod error;
mod tls;
pub mod url;

pub use client::{Answer, Collected, DEFAULT_MAX_REDIRECTS, HttpClient, HttpSettings, Outgoing};
pub use error::HttpError;
pub use tls::{TlsPolicy, pem_certs};
pub use url::{Redacted, Target, redact};

pub use http::{Method, StatusCode, header};
pub use hyper::body::Incoming;
