//! Load generator for a running `fleetsim`: scrapes every instance round-robin with a fixed
//! concurrency and reports scrapes/s and MB/s.
//!
//! `cargo run --release -p perfagent-sim --example scrape_load -- http://127.0.0.1:9100 5000 32`

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let base = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:9100".to_string());
    let total: u64 = args.next().map_or(Ok(2000), |s| s.parse())?;
    let concurrency: u64 = args.next().map_or(Ok(32), |s| s.parse())?;
    let client = reqwest::Client::new();
    let list: serde_json::Value = client
        .get(format!("{base}/admin/instances"))
        .send()
        .await?
        .json()
        .await?;
    let ids: Vec<String> = list
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v["id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    anyhow::ensure!(!ids.is_empty(), "no instances at {base}");
    let ids = Arc::new(ids);
    let next = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, base, ids) = (client.clone(), base.clone(), ids.clone());
            let (next, bytes, errors) = (next.clone(), bytes.clone(), errors.clone());
            tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= total {
                        break;
                    }
                    let id = &ids[(n as usize) % ids.len()];
                    let url = format!("{base}/instances/{id}/metrics");
                    match client.get(url).send().await {
                        Ok(r) if r.status().is_success() => match r.bytes().await {
                            Ok(b) => {
                                bytes.fetch_add(b.len() as u64, Ordering::Relaxed);
                            }
                            Err(_) => {
                                errors.fetch_add(1, Ordering::Relaxed);
                            }
                        },
                        _ => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.await?;
    }
    let secs = start.elapsed().as_secs_f64();
    let mb = bytes.load(Ordering::Relaxed) as f64 / 1e6;
    println!(
        "{total} scrapes of {} instances in {secs:.2}s: {:.0} scrapes/s, {:.1} MB/s, {} errors",
        ids.len(),
        total as f64 / secs,
        mb / secs,
        errors.load(Ordering::Relaxed)
    );
    Ok(())
}
