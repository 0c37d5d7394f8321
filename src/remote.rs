//! Checkpoints at URLs, read by byte range: `https://`, `http://`,
//! `s3://`, `gs://`, `az://` (and `abfs://`, `azure://`) through the
//! `object_store` crate, and `hf://owner/repo[@revision]/path` resolved to
//! the Hub's `resolve` URL (`HF_ENDPOINT` and `HF_TOKEN` as the Hub's own
//! tools read them). Credentials come from the usual environment variables
//! (`AWS_*`, `GOOGLE_*`, `AZURE_*`), requests are retried with backoff,
//! and a server that ignores `Range` is refused with that reason rather
//! than downloaded whole. Native only: the page reads only the files the
//! user drops.
//!
//! Parsers read through `ByteSource` in small pieces, so reads go through a
//! block cache: a read is widened to 64 KiB blocks, the blocks missing are
//! fetched at once (adjacent ones coalesced into one request, the rest in
//! parallel), and the cache is bounded. Large reads (the scan's chunks)
//! skip the cache and are split into parts fetched in parallel. Every
//! source counts its requests and the bytes that crossed the network.

use crate::error::{err, Error, ErrorKind, Result};
use crate::source::{check_range, ByteSource, RemoteStats};
use object_store::path::Path as StorePath;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, RetryConfig};
use std::collections::HashMap;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// The unit the cache fetches and keeps.
const BLOCK: u64 = 64 * 1024;
/// Blocks kept at most (64 MiB): a header-sized working set, never a file.
const CACHE_BLOCKS: usize = 1024;
/// Reads this large bypass the cache (the scan's chunks, a whole pickle).
const LARGE_READ: u64 = 1024 * 1024;
/// A large read is fetched as parts of this size, in parallel.
const PART: u64 = 8 * 1024 * 1024;
/// Missing blocks closer than this are fetched in one request.
const COALESCE: u64 = 4 * BLOCK;

/// Whether a name the user gave is a URL this module reads (rather than a
/// local path).
pub fn is_url(name: &str) -> bool {
    const SCHEMES: &[&str] = &[
        "http://", "https://", "s3://", "s3a://", "gs://", "az://", "abfs://", "abfss://",
        "azure://", "adl://", "hf://",
    ];
    SCHEMES.iter().any(|scheme| {
        name.len() > scheme.len() && name[..scheme.len()].eq_ignore_ascii_case(scheme)
    })
}

/// One runtime for every remote read of the process. Reads block on it
/// from whatever thread asks (the CLI's main thread, the scan's workers,
/// a Python thread), never from inside it.
fn runtime() -> Result<&'static tokio::runtime::Runtime> {
    static RUNTIME: OnceLock<std::result::Result<tokio::runtime::Runtime, String>> =
        OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("ckptcheck-remote")
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| {
            err(
                ErrorKind::Io,
                format!("cannot start the network runtime: {e}"),
            )
        })
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    bytes_fetched: AtomicU64,
}

/// A file at a URL, read by range.
pub struct RemoteSource {
    name: String,
    store: Arc<dyn ObjectStore>,
    location: StorePath,
    len: u64,
    cache: Mutex<HashMap<u64, bytes::Bytes>>,
    counters: Counters,
    read: AtomicU64,
}

/// How long a request and its retries may take before the read fails.
fn retry_config() -> RetryConfig {
    RetryConfig {
        backoff: object_store::BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            base: 2.0,
        },
        max_retries: 5,
        retry_timeout: Duration::from_secs(60),
    }
}

fn client_options(headers: Option<object_store::HeaderMap>) -> ClientOptions {
    let options = ClientOptions::new()
        .with_allow_http(true)
        .with_connect_timeout(Duration::from_secs(10))
        .with_timeout(Duration::from_secs(120));
    match headers {
        Some(headers) => options.with_default_headers(headers),
        None => options,
    }
}

/// The Hub's URL for `hf://owner/repo[@revision]/path/in/repo`, and the
/// token to send, if any.
pub fn resolve_hf(name: &str) -> Result<(String, Option<String>)> {
    let rest = &name["hf://".len()..];
    let parts: Vec<&str> = rest.splitn(3, '/').collect();
    let [owner, repo_and_revision, path] = parts.as_slice() else {
        return Err(err(
            ErrorKind::BadArgument,
            "an hf:// URL names a file in a repository: hf://OWNER/REPO[@REVISION]/PATH",
        )
        .in_file(name));
    };
    let (repo, revision) = repo_and_revision
        .split_once('@')
        .unwrap_or((repo_and_revision, "main"));
    if owner.is_empty() || repo.is_empty() || revision.is_empty() || path.is_empty() {
        return Err(err(
            ErrorKind::BadArgument,
            "an hf:// URL names a file in a repository: hf://OWNER/REPO[@REVISION]/PATH",
        )
        .in_file(name));
    }
    let endpoint = std::env::var("HF_ENDPOINT")
        .ok()
        .filter(|e| !e.is_empty())
        .unwrap_or_else(|| "https://huggingface.co".to_string());
    let url = format!(
        "{}/{owner}/{repo}/resolve/{revision}/{path}",
        endpoint.trim_end_matches('/')
    );
    let token = std::env::var("HF_TOKEN")
        .or_else(|_| std::env::var("HUGGING_FACE_HUB_TOKEN"))
        .ok()
        .filter(|t| !t.is_empty());
    Ok((url, token))
}

/// The store and the object's path for a URL, with credentials from the
/// environment.
fn store_for(name: &str) -> Result<(Arc<dyn ObjectStore>, StorePath)> {
    let bad_url = |why: String| err(ErrorKind::BadArgument, why).in_file(name);
    let (url_text, headers) = if name[..5].eq_ignore_ascii_case("hf://") {
        let (url, token) = resolve_hf(name)?;
        let headers = match token {
            Some(token) => {
                let mut headers = object_store::HeaderMap::new();
                let value = object_store::HeaderValue::from_str(&format!("Bearer {token}"))
                    .map_err(|_| bad_url("HF_TOKEN is not a valid header value".into()))?;
                headers.insert("authorization", value);
                Some(headers)
            }
            None => None,
        };
        (url, headers)
    } else {
        (name.to_string(), None)
    };
    let url = url::Url::parse(&url_text).map_err(|e| bad_url(format!("not a URL: {e}")))?;
    let store_error = |e: object_store::Error| bad_url(format!("cannot reach it: {e}"));
    let scheme = url.scheme().to_ascii_lowercase();
    // The cloud stores' builders differ in type, not in use: credentials
    // from the environment, then the URL, the client options, the retries.
    macro_rules! from_env {
        ($builder:ty) => {
            Arc::new(
                <$builder>::from_env()
                    .with_url(url_text.as_str())
                    .with_client_options(client_options(None))
                    .with_retry(retry_config())
                    .build()
                    .map_err(store_error)?,
            )
        };
    }
    let store: Arc<dyn ObjectStore> = match scheme.as_str() {
        "http" | "https" => {
            let base = &url[..url::Position::BeforePath];
            Arc::new(
                object_store::http::HttpBuilder::new()
                    .with_url(base)
                    .with_client_options(client_options(headers))
                    .with_retry(retry_config())
                    .build()
                    .map_err(store_error)?,
            )
        }
        "s3" | "s3a" => from_env!(object_store::aws::AmazonS3Builder),
        "gs" => from_env!(object_store::gcp::GoogleCloudStorageBuilder),
        _ => from_env!(object_store::azure::MicrosoftAzureBuilder),
    };
    // Object stores name the object by the URL's path; Azure's URL forms
    // put the container first, which the builder has taken.
    let path = match scheme.as_str() {
        "az" | "abfs" | "abfss" | "azure" | "adl" => {
            let (_, path) = object_store::ObjectStoreScheme::parse(&url)
                .map_err(|e| bad_url(format!("not a storage URL: {e}")))?;
            path
        }
        _ => StorePath::from_url_path(url.path()).map_err(|e| bad_url(format!("bad path: {e}")))?,
    };
    Ok((store, path))
}

/// What went wrong with a request, in the words a user acts on.
fn remote_error(name: &str, error: object_store::Error) -> Error {
    use object_store::Error as E;
    let (message, fix) = match &error {
        E::NotFound { .. } => (
            "not found (HTTP 404)".to_string(),
            "check the URL; for hf:// the owner, repository, revision and path",
        ),
        E::PermissionDenied { .. } => (
            "access denied (HTTP 403)".to_string(),
            "set the credentials the store reads: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, GOOGLE_APPLICATION_CREDENTIALS, AZURE_STORAGE_ACCOUNT_KEY, or HF_TOKEN for a gated or private Hub repository",
        ),
        E::Unauthenticated { .. } => (
            "authentication required (HTTP 401)".to_string(),
            "set the credentials the store reads: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, GOOGLE_APPLICATION_CREDENTIALS, AZURE_STORAGE_ACCOUNT_KEY, or HF_TOKEN for a gated or private Hub repository",
        ),
        other => {
            let text = full_message(other);
            if text.contains("non-partial response")
                || text.contains("Content-Range")
                || text.contains("Range request not supported")
            {
                (
                    "the server does not honour HTTP Range requests (it answered a byte-range request with the whole file)".to_string(),
                    "ckptcheck reads a remote checkpoint by byte range; download the file and check the local copy, or serve it from a server that supports Range (nginx, S3, the Hub)",
                )
            } else {
                (
                    format!("remote read failed: {text}"),
                    "check the network and the URL; requests were retried with backoff",
                )
            }
        }
    };
    err(ErrorKind::Remote, message)
        .in_file(name)
        .because("remote-read", fix)
}

/// An error's message with its sources, which hold the HTTP details.
fn full_message(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

impl RemoteSource {
    /// Open a URL: one HEAD request for its size.
    pub fn open(name: &str) -> Result<RemoteSource> {
        let (store, location) = store_for(name)?;
        let counters = Counters::default();
        counters.requests.fetch_add(1, Ordering::Relaxed);
        let meta = runtime()?
            .block_on(store.head(&location))
            .map_err(|e| remote_error(name, e))?;
        Ok(RemoteSource {
            name: name.to_string(),
            store,
            location,
            len: meta.size,
            cache: Mutex::new(HashMap::new()),
            counters,
            read: AtomicU64::new(0),
        })
    }

    pub fn stats(&self) -> RemoteStats {
        RemoteStats {
            requests: self.counters.requests.load(Ordering::Relaxed),
            bytes_fetched: self.counters.bytes_fetched.load(Ordering::Relaxed),
        }
    }

    /// Fetch `ranges` (sorted or not) with adjacent ones coalesced and the
    /// rest in parallel; counts each request.
    fn fetch(&self, ranges: &[Range<u64>], coalesce: u64) -> Result<Vec<bytes::Bytes>> {
        let fetched = runtime()?
            .block_on(object_store::coalesce_ranges(
                ranges,
                |range| {
                    self.counters.requests.fetch_add(1, Ordering::Relaxed);
                    let store = Arc::clone(&self.store);
                    let location = self.location.clone();
                    async move { store.get_range(&location, range).await }
                },
                coalesce,
            ))
            .map_err(|e| remote_error(&self.name, e))?;
        for (range, bytes) in ranges.iter().zip(&fetched) {
            if bytes.len() as u64 != range.end - range.start {
                return Err(err(
                    ErrorKind::Remote,
                    format!(
                        "the server sent {} bytes for a {}-byte range (did the file change while it was read?)",
                        bytes.len(),
                        range.end - range.start
                    ),
                )
                .at(range.start)
                .in_file(&self.name));
            }
        }
        let total: u64 = fetched.iter().map(|b| b.len() as u64).sum();
        self.counters
            .bytes_fetched
            .fetch_add(total, Ordering::Relaxed);
        Ok(fetched)
    }

    fn block_range(&self, block: u64) -> Range<u64> {
        let start = block * BLOCK;
        start..(start + BLOCK).min(self.len)
    }

    /// The blocks covering `ranges`, in order: those cached, and the
    /// missing ones fetched together and cached. The caller copies from
    /// what it is handed, so another thread's eviction cannot take a block
    /// from under it.
    fn blocks(&self, ranges: &[(u64, u64)]) -> Result<Vec<bytes::Bytes>> {
        let mut wanted: Vec<u64> = ranges
            .iter()
            .filter(|(_, len)| *len > 0)
            .flat_map(|&(offset, len)| {
                let end = offset.saturating_add(len).min(self.len);
                (offset / BLOCK)..end.div_ceil(BLOCK)
            })
            .collect();
        wanted.dedup();
        let cached: Vec<Option<bytes::Bytes>> = {
            let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            wanted
                .iter()
                .map(|block| cache.get(block).cloned())
                .collect()
        };
        let mut missing: Vec<u64> = wanted
            .iter()
            .zip(&cached)
            .filter(|(_, bytes)| bytes.is_none())
            .map(|(block, _)| *block)
            .collect();
        missing.sort_unstable();
        missing.dedup();
        if missing.is_empty() {
            return Ok(cached.into_iter().flatten().collect());
        }
        let block_ranges: Vec<Range<u64>> = missing.iter().map(|b| self.block_range(*b)).collect();
        let mut fetched: HashMap<u64, bytes::Bytes> = missing
            .into_iter()
            .zip(self.fetch(&block_ranges, COALESCE)?)
            .collect();
        {
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if cache.len() + fetched.len() > CACHE_BLOCKS {
                cache.clear();
            }
            cache.extend(fetched.iter().map(|(block, bytes)| (*block, bytes.clone())));
        }
        Ok(wanted
            .iter()
            .zip(cached)
            .filter_map(|(block, bytes)| bytes.or_else(|| fetched.remove(block)))
            .collect())
    }
}

impl ByteSource for RemoteSource {
    fn name(&self) -> &str {
        &self.name
    }
    fn len(&self) -> u64 {
        self.len
    }
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        check_range(self, offset, buf.len() as u64)?;
        let len = buf.len() as u64;
        if len >= LARGE_READ {
            let parts: Vec<Range<u64>> = (0..len.div_ceil(PART))
                .map(|i| offset + i * PART..offset + ((i + 1) * PART).min(len))
                .collect();
            // No coalescing: the parts are fetched side by side.
            let fetched = self.fetch(&parts, 0)?;
            let mut at = 0usize;
            for bytes in fetched {
                buf[at..at + bytes.len()].copy_from_slice(&bytes);
                at += bytes.len();
            }
        } else if len > 0 {
            // The blocks are exact (`fetch` checks every length), so they
            // cover the read from the first block's offset on.
            let skip = (offset % BLOCK) as usize;
            let mut at = 0usize;
            for (index, bytes) in self.blocks(&[(offset, len)])?.iter().enumerate() {
                let within = if index == 0 { skip } else { 0 };
                let take = (bytes.len() - within).min(buf.len() - at);
                buf[at..at + take].copy_from_slice(&bytes[within..within + take]);
                at += take;
            }
        }
        self.read.fetch_add(len, Ordering::Relaxed);
        Ok(())
    }
    fn bytes_read(&self) -> u64 {
        self.read.load(Ordering::Relaxed)
    }
    fn as_sync(&self) -> Option<&(dyn ByteSource + Sync)> {
        Some(self)
    }
    fn prefetch(&self, ranges: &[(u64, u64)]) {
        // A failed prefetch is not an error: the read that needs the bytes
        // fetches them again and reports what went wrong.
        let _ = self.blocks(ranges);
    }
    fn remote_stats(&self) -> Option<RemoteStats> {
        Some(self.stats())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_told_from_paths() {
        for url in [
            "https://example.com/model.safetensors",
            "HTTP://example.com/a.pt",
            "s3://bucket/key.pt",
            "gs://bucket/key.pt",
            "az://container/key.pt",
            "hf://openai/clip-vit-base-patch32/model.safetensors",
        ] {
            assert!(is_url(url), "{url}");
        }
        for path in [
            "model.pt",
            "/tmp/https/model.pt",
            "C:\\models\\a.pt",
            "https://",
            "hf:/x",
        ] {
            assert!(!is_url(path), "{path}");
        }
    }

    #[test]
    fn hf_urls_resolve_to_the_hubs_resolve_urls() {
        // HF_ENDPOINT is read at call time; the default is the Hub.
        let (url, _) = resolve_hf("hf://openai/clip-vit-base-patch32/model.safetensors").unwrap();
        let endpoint = std::env::var("HF_ENDPOINT").unwrap_or("https://huggingface.co".into());
        assert_eq!(
            url,
            format!("{endpoint}/openai/clip-vit-base-patch32/resolve/main/model.safetensors")
        );
        let (url, _) = resolve_hf("hf://org/repo@v1.0/sub/dir/model.bin").unwrap();
        assert!(
            url.ends_with("/org/repo/resolve/v1.0/sub/dir/model.bin"),
            "{url}"
        );
        for bad in [
            "hf://org",
            "hf://org/repo",
            "hf://org/repo@/x",
            "hf:///repo/x",
        ] {
            let error = resolve_hf(bad).unwrap_err();
            assert_eq!(error.kind, ErrorKind::BadArgument, "{bad}");
        }
    }
}
