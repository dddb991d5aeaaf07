//! The SSRF guard on the real scraper (`perfagent::scrape::Scraper`), beyond the URL checks of
//! `netguard`'s unit tests: a redirect to a forbidden place is refused before anything connects to
//! it, and a host name is judged by the addresses it resolves to. One local server on 127.0.0.1
//! answers with the redirects; nothing else is ever contacted (every refused target is refused
//! before a connection is made, which the request counts show where the target is ours).

use perfagent::netguard::{NetGuard, UrlRejected};
use perfagent::scrape::{ScrapeConfig, ScrapeError, Scraper};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A server on 127.0.0.1 that answers `GET /to?<location>` with a 302 to `<location>` and
/// `GET /metrics` with a metric; returns its port and the number of requests it got.
async fn serve() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let counted = counted.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut n = 0;
                while !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") && n < buf.len() {
                    match sock.read(&mut buf[n..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(k) => n += k,
                    }
                }
                counted.fetch_add(1, Ordering::SeqCst);
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                let target = req.split_whitespace().nth(1).unwrap_or("/").to_string();
                let answer = match target.strip_prefix("/to?") {
                    Some(location) => format!(
                        "HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    ),
                    None => {
                        let body = "vllm:num_requests_running 1\n";
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        )
                    }
                };
                let _ = sock.write_all(answer.as_bytes()).await;
            });
        }
    });
    (port, hits)
}

fn scraper(allowed: &str) -> Scraper {
    Scraper::new(
        NetGuard::from_list(allowed).unwrap(),
        ScrapeConfig {
            timeout: Duration::from_millis(800),
            max_bytes: 1024 * 1024,
            retries: 0,
            backoff_base: Duration::from_millis(10),
            backoff_max: Duration::from_millis(20),
        },
    )
    .unwrap()
}

fn refused(result: Result<bytes::Bytes, ScrapeError>) -> UrlRejected {
    match result {
        Err(ScrapeError::Rejected(why)) => why,
        other => panic!("expected the guard to refuse, got {other:?}"),
    }
}

#[tokio::test]
async fn a_redirect_within_the_allowed_networks_is_followed() {
    let (port, hits) = serve().await;
    let body = scraper("127.0.0.1/32")
        .fetch_once(&format!(
            "http://127.0.0.1:{port}/to?http://127.0.0.1:{port}/metrics"
        ))
        .await
        .expect("followed");
    assert!(body.starts_with(b"vllm:"));
    assert_eq!(hits.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_redirect_to_the_metadata_service_is_refused() {
    let (port, _) = serve().await;
    let s = scraper("127.0.0.1/32");
    for location in [
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://[::ffff:169.254.169.254]/",
    ] {
        let why = refused(
            s.fetch_once(&format!("http://127.0.0.1:{port}/to?{location}"))
                .await,
        );
        assert!(
            matches!(why, UrlRejected::Forbidden(_)),
            "{location}: {why}"
        );
    }
}

#[tokio::test]
async fn a_redirect_to_a_loopback_port_that_is_not_allowed_is_refused() {
    let (port, hits) = serve().await;
    let (admin, admin_hits) = serve().await;
    // Loopback allowed for 127.0.0.1 only: 127.0.0.2 and ::1 stay refused.
    let s = scraper("127.0.0.1/32");
    for location in [
        format!("http://127.0.0.2:{admin}/admin"),
        format!("http://[::1]:{admin}/admin"),
    ] {
        let why = refused(
            s.fetch_once(&format!("http://127.0.0.1:{port}/to?{location}"))
                .await,
        );
        assert!(matches!(why, UrlRejected::Loopback(_)), "{location}: {why}");
    }
    assert_eq!(hits.load(Ordering::SeqCst), 2, "only the redirects");
    assert_eq!(admin_hits.load(Ordering::SeqCst), 0, "never reached");
}

#[tokio::test]
async fn a_redirect_to_another_scheme_is_refused() {
    let (port, _) = serve().await;
    let s = scraper("127.0.0.1/32");
    for location in ["file:///etc/passwd", "gopher://127.0.0.1:6379/_INFO"] {
        let result = s
            .fetch_once(&format!("http://127.0.0.1:{port}/to?{location}"))
            .await;
        assert!(result.is_err(), "{location} was followed: {result:?}");
    }
}

#[tokio::test]
async fn a_host_name_is_judged_by_the_addresses_it_resolves_to() {
    let (port, hits) = serve().await;
    // `localhost` is a name, so registration accepts it; it resolves to loopback, which this
    // guard does not allow, so nothing connects.
    let why = refused(
        scraper("10.0.0.0/8")
            .fetch_once(&format!("http://localhost:{port}/metrics"))
            .await,
    );
    assert!(
        matches!(why, UrlRejected::Loopback(_) | UrlRejected::NotAllowed(_)),
        "{why}"
    );
    // Without an allow-list, loopback is refused all the same.
    let why = refused(
        scraper("")
            .fetch_once(&format!("http://localhost:{port}/metrics"))
            .await,
    );
    assert!(matches!(why, UrlRejected::Loopback(_)), "{why}");
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}
