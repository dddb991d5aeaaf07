//! CORS: the template's HTTP API `CorsConfiguration` says what the function says (so a browser
//! gets one answer whichever of them answers), and the policy's edge cases. The answers of the
//! deployed function itself are tested in `functions/tests/api_function.rs`.

use http::header::{ACCESS_CONTROL_ALLOW_ORIGIN, ORIGIN, VARY};
use http::{HeaderMap, HeaderValue, Method, Response};
use perfagent::api::cors::{allow_methods, ALLOW_HEADERS, MAX_AGE_SECONDS};
use perfagent::api::Cors;

fn template() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../infra/template.yaml");
    std::fs::read_to_string(path).expect("infra/template.yaml")
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// The lines nested under the first line whose content starts with `key:` (deeper indented,
/// comments and blank lines left out).
fn block<'t>(text: &'t str, key: &str) -> Vec<&'t str> {
    let mut lines = text.lines();
    let head = lines
        .find(|l| {
            l.trim_start()
                .trim_start_matches("- ")
                .starts_with(&format!("{key}:"))
        })
        .unwrap_or_else(|| panic!("no {key}: in the template"));
    let depth = indent(head) + head.trim_start().starts_with("- ") as usize * 2;
    lines
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .take_while(|l| indent(l) > depth)
        .collect()
}

/// The value written after `key:` on its own line of `lines`.
fn scalar<'t>(lines: &[&'t str], key: &str) -> &'t str {
    lines
        .iter()
        .map(|l| l.trim_start().trim_start_matches("- "))
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .unwrap_or_else(|| panic!("no {key}: in {lines:#?}"))
        .trim()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[test]
fn the_templates_cors_configuration_is_the_functions() {
    let text = template();
    let cors = block(&text, "CorsConfiguration");

    let origins = scalar(&cors, "AllowOrigins");
    assert!(origins.contains("!Ref CorsAllowedOrigins"), "{origins}");
    let api_env = block(&text, "ApiFunction");
    assert_eq!(
        scalar(&api_env, "CORS_ALLOWED_ORIGINS"),
        "!Ref CorsAllowedOrigins",
        "the function reads the parameter the gateway does"
    );

    let methods: Vec<String> = scalar(&cors, "AllowMethods")
        .trim_matches(['[', ']'])
        .split(',')
        .map(|m| m.trim().to_string())
        .collect();
    assert_eq!(
        sorted(methods),
        sorted(allow_methods().into_iter().map(String::from).collect()),
        "AllowMethods are the methods the API's routes serve"
    );

    let headers = block(&text, "AllowHeaders");
    let headers: Vec<String> = headers
        .iter()
        .map(|l| l.trim().trim_start_matches("- ").to_string())
        .collect();
    assert_eq!(
        sorted(headers),
        sorted(ALLOW_HEADERS.iter().map(|h| h.to_string()).collect())
    );

    assert_eq!(scalar(&cors, "MaxAge"), MAX_AGE_SECONDS.to_string());
}

fn request(origin: Option<&str>, preflight_method: Option<&str>) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Some(o) = origin {
        h.insert(ORIGIN, HeaderValue::from_str(o).unwrap());
    }
    if let Some(m) = preflight_method {
        h.insert(
            "access-control-request-method",
            HeaderValue::from_str(m).unwrap(),
        );
    }
    h
}

#[test]
fn a_wildcard_allows_every_origin_with_one_answer() {
    let cors = Cors::new(["*"]).unwrap();
    let mut resp = Response::new(String::new());
    cors.apply(&request(Some("https://anyone.example"), None), &mut resp);
    assert_eq!(resp.headers()[ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    assert!(
        resp.headers().get(VARY).is_none(),
        "the answer does not depend on the origin"
    );
    let preflight = cors
        .preflight(
            &Method::OPTIONS,
            &request(Some("http://localhost:5173"), Some("DELETE")),
        )
        .expect("a preflight");
    assert_eq!(preflight.headers()[ACCESS_CONTROL_ALLOW_ORIGIN], "*");
}

#[test]
fn origins_match_as_browsers_send_them() {
    let cors = Cors::new(["https://Console.Example.com:443/"]).unwrap();
    let mut resp = Response::new(String::new());
    cors.apply(
        &request(Some("https://console.example.com"), None),
        &mut resp,
    );
    assert_eq!(
        resp.headers()[ACCESS_CONTROL_ALLOW_ORIGIN],
        "https://console.example.com"
    );
    for other in [
        "http://console.example.com",
        "https://console.example.com:8443",
        "https://evil.console.example.com",
        "null",
    ] {
        let mut resp = Response::new(String::new());
        cors.apply(&request(Some(other), None), &mut resp);
        assert!(
            resp.headers().get(ACCESS_CONTROL_ALLOW_ORIGIN).is_none(),
            "{other}"
        );
        assert_eq!(resp.headers()[VARY], "origin");
    }
}

#[test]
fn only_an_options_request_with_origin_and_method_is_a_preflight() {
    let cors = Cors::new(["https://console.example.com"]).unwrap();
    let origin = Some("https://console.example.com");
    assert!(cors
        .preflight(&Method::OPTIONS, &request(origin, Some("POST")))
        .is_some());
    assert!(cors
        .preflight(&Method::OPTIONS, &request(origin, None))
        .is_none());
    assert!(cors
        .preflight(&Method::OPTIONS, &request(None, Some("POST")))
        .is_none());
    assert!(cors
        .preflight(&Method::POST, &request(origin, Some("POST")))
        .is_none());
    assert!(Cors::default()
        .preflight(&Method::OPTIONS, &request(origin, Some("POST")))
        .is_none());
}
