//! Fetching a `/metrics` endpoint safely: the network guard on every resolved address and redirect
//! hop, a timeout over the whole exchange, a size cap enforced while the body streams in (a 50 MB
//! answer is cut off at the cap, not buffered), and retries with exponential backoff and full jitter
//! for errors that a second try can fix.

use crate::netguard::{NetGuard, UrlRejected};
use bytes::{Bytes, BytesMut};
use rand::Rng;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScrapeConfig {
    pub timeout: Duration,
    pub max_bytes: usize,
    /// Extra attempts after the first, for transient errors only.
    pub retries: u32,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
}

impl Default for ScrapeConfig {
    fn default() -> Self {
        ScrapeConfig {
            timeout: Duration::from_secs(5),
            max_bytes: 8 * 1024 * 1024,
            retries: 2,
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_secs(2),
        }
    }
}

/// Why a scrape failed. The `kind` string is stored with the instance's health and shown by the API.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScrapeError {
    #[error("refused: {0}")]
    Rejected(#[from] UrlRejected),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("connection failed: {0}")]
    Connect(String),
    #[error("HTTP status {0}")]
    Status(u16),
    #[error("body larger than the {0}-byte cap")]
    TooLarge(usize),
    #[error("reading the body failed: {0}")]
    Body(String),
}

impl ScrapeError {
    pub fn kind(&self) -> &'static str {
        match self {
            ScrapeError::Rejected(_) => "rejected",
            ScrapeError::Timeout(_) => "timeout",
            ScrapeError::Connect(_) => "connect",
            ScrapeError::Status(_) => "status",
            ScrapeError::TooLarge(_) => "too_large",
            ScrapeError::Body(_) => "body",
        }
    }

    /// Worth another try within the same pass. A timeout is not: the slot it held already cost the
    /// whole timeout, and the next pass (or the breaker) deals with a slow server.
    pub fn is_transient(&self) -> bool {
        match self {
            ScrapeError::Connect(_) | ScrapeError::Body(_) => true,
            ScrapeError::Status(s) => *s >= 500 || *s == 429,
            _ => false,
        }
    }
}

/// A DNS resolver that drops every address the guard refuses, so a host name that resolves to the
/// metadata service (or rebinds to it) is never connected to.
struct GuardedResolver {
    guard: Arc<NetGuard>,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let guard = self.guard.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut last_refusal = None;
            let allowed: Vec<SocketAddr> = addrs
                .into_iter()
                .filter(|a| match guard.check_ip(a.ip()) {
                    Ok(()) => true,
                    Err(e) => {
                        last_refusal = Some(e);
                        false
                    }
                })
                .collect();
            if allowed.is_empty() {
                // The refusal itself, so `classify` finds it: a scrape the guard refuses is
                // `rejected` (permanent), not a connection failure to retry.
                return Err(match last_refusal {
                    Some(why) => Box::new(why) as Box<dyn std::error::Error + Send + Sync>,
                    None => format!("{host}: no address").into(),
                });
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// One HTTP client (connection pool) shared by every scrape of an invocation.
#[derive(Clone)]
pub struct Scraper {
    client: reqwest::Client,
    guard: Arc<NetGuard>,
    config: ScrapeConfig,
}

impl Scraper {
    pub fn new(guard: NetGuard, config: ScrapeConfig) -> Result<Self, reqwest::Error> {
        let guard = Arc::new(guard);
        let redirect_guard = guard.clone();
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(3)))
            .no_proxy()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(4)
            .dns_resolver(GuardedResolver {
                guard: guard.clone(),
            })
            .redirect(reqwest::redirect::Policy::custom(move |attempt| {
                if attempt.previous().len() >= 3 {
                    attempt.error("too many redirects")
                } else if let Err(e) = redirect_guard.check_parsed(attempt.url()) {
                    attempt.error(e)
                } else {
                    attempt.follow()
                }
            }))
            .user_agent(concat!("perfagent/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Scraper {
            client,
            guard,
            config,
        })
    }

    pub fn config(&self) -> &ScrapeConfig {
        &self.config
    }

    /// One attempt.
    pub async fn fetch_once(&self, url: &str) -> Result<Bytes, ScrapeError> {
        let url = self.guard.check_url(url)?;
        let mut resp = self
            .client
            .get(url)
            .header(
                reqwest::header::ACCEPT,
                "text/plain;version=0.0.4;q=0.9,application/openmetrics-text;version=1.0.0;q=0.5,*/*;q=0.1",
            )
            .send()
            .await
            .map_err(|e| self.classify(e))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(ScrapeError::Status(status.as_u16()));
        }
        let cap = self.config.max_bytes;
        if resp.content_length().is_some_and(|n| n > cap as u64) {
            return Err(ScrapeError::TooLarge(cap));
        }
        let mut body = BytesMut::with_capacity(
            resp.content_length()
                .map_or(64 * 1024, |n| n as usize)
                .min(cap),
        );
        while let Some(chunk) = resp.chunk().await.map_err(|e| self.classify(e))? {
            if body.len() + chunk.len() > cap {
                return Err(ScrapeError::TooLarge(cap));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    }

    /// Attempts until success, a permanent error, or the retries are spent. Returns the attempts made.
    pub async fn fetch(&self, url: &str) -> (Result<Bytes, ScrapeError>, u32) {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.fetch_once(url).await {
                Err(e) if e.is_transient() && attempt <= self.config.retries => {
                    tokio::time::sleep(self.backoff(attempt)).await;
                }
                other => return (other, attempt),
            }
        }
    }

    /// Full jitter: a uniform wait in [0, min(max, base·2^(attempt-1))], so retries of many instances
    /// failing together do not arrive together.
    fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .config
            .backoff_base
            .saturating_mul(1u32 << (attempt - 1).min(16))
            .min(self.config.backoff_max);
        let ms = exp.as_millis() as u64;
        Duration::from_millis(rand::rng().random_range(0..=ms))
    }

    fn classify(&self, e: reqwest::Error) -> ScrapeError {
        if e.is_timeout() {
            return ScrapeError::Timeout(self.config.timeout);
        }
        let mut msg = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            // The guard's refusal travels as the error source of a redirect or resolve failure.
            if let Some(r) = s.downcast_ref::<UrlRejected>() {
                return ScrapeError::Rejected(r.clone());
            }
            msg = format!("{msg}: {s}");
            src = s.source();
        }
        if e.is_body() || e.is_decode() {
            ScrapeError::Body(msg)
        } else {
            ScrapeError::Connect(msg)
        }
    }
}
