//! The `perfagent scrape` command against servers started by the test on 127.0.0.1: a capture
//! served over HTTP, a body over the size cap (announced or streamed), an error status, a server
//! that never answers, a closed port, and a refused scheme — each with its exit code.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::thread;
use std::time::Duration;

fn capture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/fixtures/metrics")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Reads a request up to its blank line, so the client is not reset before it sends.
fn read_request(stream: &TcpStream) {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
        if line == "\r\n" {
            break;
        }
        line.clear();
    }
}

/// Serves every connection with `respond`, on a thread that lives as long as the test process.
fn serve(respond: impl Fn(TcpStream) + Send + 'static) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            read_request(&stream);
            respond(stream);
        }
    });
    addr
}

fn http_response(status: &str, headers: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status}\r\n{headers}Connection: close\r\n\r\n").into_bytes();
    out.extend_from_slice(body);
    out
}

fn serve_bytes(response: Vec<u8>) -> SocketAddr {
    serve(move |mut stream| {
        let _ = stream.write_all(&response);
    })
}

fn perfagent(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_perfagent"))
        .args(args)
        .output()
        .expect("the binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "a panic: {stderr}");
    out
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("exited, not killed")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn scrape_of_a_served_capture_prints_its_snapshot() {
    let body = capture("vllm-0.10.x-ngc25.09-armandossrecife-qwen3-4b.prom");
    let headers = format!(
        "Content-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\n",
        body.len()
    );
    let addr = serve_bytes(http_response("200 OK", &headers, &body));
    let out = perfagent(&["scrape", &format!("http://{addr}/metrics")]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let snap: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(snap["engine"], "vllm");
    assert_eq!(
        snap["models"][0]["metrics"]["prefix_cache_hits_total"],
        80.0
    );
}

#[test]
fn scrape_of_an_announced_body_over_the_cap_exits_6() {
    let body = capture("sglang-0.4.x-docs-production_metrics-llama3.1-8b.prom");
    let headers = format!("Content-Length: {}\r\n", body.len());
    let addr = serve_bytes(http_response("200 OK", &headers, &body));
    let out = perfagent(&[
        "scrape",
        &format!("http://{addr}/metrics"),
        "--max-bytes",
        "1000",
    ]);
    assert_eq!(code(&out), 6, "{}", stderr(&out));
    assert!(stderr(&out).contains("1000-byte cap"), "{}", stderr(&out));
}

#[test]
fn scrape_of_a_streamed_body_over_the_cap_is_cut_off_and_exits_6() {
    // No Content-Length: the cap can only be enforced while the body streams in.
    let addr = serve(|mut stream| {
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
        let line = b"sglang:num_running_reqs{model_name=\"m\"} 1.0\n";
        for _ in 0..10_000 {
            if stream.write_all(line).is_err() {
                return;
            }
        }
    });
    let out = perfagent(&[
        "scrape",
        &format!("http://{addr}/metrics"),
        "--max-bytes",
        "4096",
    ]);
    assert_eq!(code(&out), 6, "{}", stderr(&out));
    assert!(stderr(&out).contains("4096-byte cap"), "{}", stderr(&out));
}

#[test]
fn scrape_of_an_error_status_exits_6() {
    let addr = serve_bytes(http_response(
        "503 Service Unavailable",
        "Content-Length: 0\r\n",
        b"",
    ));
    let out = perfagent(&["scrape", &format!("http://{addr}/metrics")]);
    assert_eq!(code(&out), 6);
    assert!(stderr(&out).contains("503"), "{}", stderr(&out));
}

#[test]
fn scrape_of_a_closed_port_exits_5() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let out = perfagent(&["scrape", &format!("http://127.0.0.1:{port}/metrics")]);
    assert_eq!(code(&out), 5, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("connection failed"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn scrape_of_a_server_that_never_answers_times_out_with_5() {
    let addr = serve(|stream| {
        thread::sleep(Duration::from_secs(5));
        drop(stream);
    });
    let out = perfagent(&[
        "scrape",
        &format!("http://{addr}/metrics"),
        "--timeout-ms",
        "300",
    ]);
    assert_eq!(code(&out), 5, "{}", stderr(&out));
    assert!(stderr(&out).contains("timed out"), "{}", stderr(&out));
}

#[test]
fn scrape_of_a_non_http_url_is_a_usage_error() {
    let out = perfagent(&["scrape", "file:///etc/passwd"]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("use http or https"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn scrape_of_a_page_that_is_not_metrics_exits_1() {
    let body = b"<html>\n<body>not metrics</body>\n</html>\n";
    let headers = format!("Content-Length: {}\r\n", body.len());
    let addr = serve_bytes(http_response("200 OK", &headers, body));
    let out = perfagent(&["scrape", &format!("http://{addr}/metrics")]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("/metrics:1:"), "{}", stderr(&out));
}
