//! Downloads of auxiliary files (firmware images and the like) to a local file, with the same
//! client as image writes: URL retries, Range resume, per-read timeouts, the agent's CA file /
//! insecure setting, proxies.
//!
//! Used by hardware managers that fetch a file, verify it and hand it to a tool; image writes
//! keep using [`crate::deploy`] and [`crate::pipeline`].

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ipa_core::services::AgentServices;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::error::{ImageError, Result};
use crate::http::{Download, HttpClient, HttpOptions};

/// Download options from the agent configuration alone (no `image_info`): the
/// `image_download_connection_*` timeout/retries/interval, `image_download_max_duration`,
/// `insecure` and `cafile`, and proxies from the `http_proxy` / `https_proxy` / `no_proxy`
/// environment variables (either case). No `Authorization` header.
pub fn agent_http_options(s: &AgentServices) -> HttpOptions {
    let c = &s.config;
    HttpOptions {
        timeout: Duration::from_secs(c.image_download_connection_timeout.max(1)),
        retries: c.image_download_connection_retries,
        retry_interval: Duration::from_secs(c.image_download_connection_retry_interval),
        max_duration: (c.image_download_max_duration > 0)
            .then(|| Duration::from_secs(c.image_download_max_duration)),
        insecure: c.insecure,
        cafile: c.cafile.clone(),
        authorization: None,
        proxies: env_proxies(|k| std::env::var(k).ok()),
        no_proxy: env_var_either(&|k| std::env::var(k).ok(), "no_proxy")
            .map(|n| n.split(',').map(|x| x.trim().to_string()).filter(|x| !x.is_empty()).collect())
            .unwrap_or_default(),
    }
}

fn env_var_either(get: &dyn Fn(&str) -> Option<String>, lower: &str) -> Option<String> {
    get(lower).or_else(|| get(&lower.to_ascii_uppercase())).filter(|v| !v.trim().is_empty())
}

fn env_proxies(get: impl Fn(&str) -> Option<String>) -> Vec<(String, String)> {
    [("http", "http_proxy"), ("https", "https_proxy")]
        .into_iter()
        .filter_map(|(scheme, var)| {
            env_var_either(&get, var).map(|v| (scheme.to_string(), v.trim().to_string()))
        })
        .collect()
}

/// Stream `url` into a new file at `dest` (created or truncated), handing every chunk to
/// `inspect` (a hasher, typically) before it is written, then fsync. Returns the byte count.
///
/// `http://` and `https://` go through [`HttpClient`] / [`Download`] (retries, resume, TLS
/// settings of `client`); `file://<path>` reads a local file. `id` names the download in
/// errors (`ImageDownloadError` once mapped to an `AgentError`). Nothing is held in memory
/// beyond one chunk.
pub async fn download_to_file(
    client: Arc<HttpClient>,
    id: &str,
    url: &str,
    dest: &Path,
    mut inspect: impl FnMut(&[u8]) + Send,
) -> Result<u64> {
    let fail = |msg: String| ImageError::Download { image_id: id.to_string(), msg };
    let mut file = tokio::fs::File::create(dest)
        .await
        .map_err(|e| fail(format!("cannot create {}: {e}", dest.display())))?;
    let mut total = 0u64;
    if let Some(path) = url.strip_prefix("file://") {
        let mut src = tokio::fs::File::open(path)
            .await
            .map_err(|e| fail(format!("cannot open {path}: {e}")))?;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = src.read(&mut buf).await.map_err(|e| fail(format!("reading {path}: {e}")))?;
            if n == 0 {
                break;
            }
            inspect(&buf[..n]);
            file.write_all(&buf[..n])
                .await
                .map_err(|e| fail(format!("writing {}: {e}", dest.display())))?;
            total += n as u64;
        }
    } else if url.starts_with("http://") || url.starts_with("https://") {
        let mut dl = Download::new(client, id, vec![url.to_string()]);
        while let Some(chunk) = dl.next_chunk().await? {
            inspect(&chunk);
            file.write_all(&chunk)
                .await
                .map_err(|e| fail(format!("writing {}: {e}", dest.display())))?;
            total += chunk.len() as u64;
        }
    } else {
        return Err(fail(format!(
            "unsupported URL {url}: only http://, https:// and file:// are supported"
        )));
    }
    file.flush().await.map_err(|e| fail(format!("writing {}: {e}", dest.display())))?;
    file.sync_all().await.map_err(|e| fail(format!("syncing {}: {e}", dest.display())))?;
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxies_come_from_either_case_of_the_environment_variables() {
        let env = |k: &str| match k {
            "HTTP_PROXY" => Some("http://proxy:3128".to_string()),
            "https_proxy" => Some("http://sproxy:3128".to_string()),
            "HTTPS_PROXY" => Some("http://ignored:1".to_string()),
            _ => None,
        };
        assert_eq!(
            env_proxies(env),
            vec![
                ("http".to_string(), "http://proxy:3128".to_string()),
                ("https".to_string(), "http://sproxy:3128".to_string())
            ]
        );
        assert!(env_proxies(|_| None).is_empty());
    }

    #[tokio::test]
    async fn file_urls_are_copied_through_the_inspector_and_other_schemes_refused() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src.bin");
        std::fs::write(&src, b"firmware bytes").unwrap();
        let client = Arc::new(HttpClient::new(HttpOptions::default()).unwrap());
        let dest = dir.path().join("dest.bin");
        let mut seen = Vec::new();
        let url = format!("file://{}", src.display());
        let n = download_to_file(client.clone(), "fw", &url, &dest, |c| seen.extend_from_slice(c))
            .await
            .unwrap();
        assert_eq!(n, 14);
        assert_eq!(seen, b"firmware bytes");
        assert_eq!(std::fs::read(&dest).unwrap(), b"firmware bytes");
        let err = download_to_file(client, "fw", "ftp://h/x", &dest, |_| {}).await.unwrap_err();
        assert!(matches!(err, ImageError::Download { .. }), "{err:?}");
    }
}
