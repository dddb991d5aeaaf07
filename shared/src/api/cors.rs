//! CORS, for a browser console on another origin: the allowed origins come from
//! `CORS_ALLOWED_ORIGINS` (the template's `CorsAllowedOrigins`, empty = CORS off). The same
//! parameter sets the HTTP API's `CorsConfiguration`, with the methods, headers and max age below
//! (`tests/api_cors.rs` checks the template against them), so a browser gets the same answer
//! whether API Gateway answers (on AWS it answers preflights itself and replaces the function's
//! CORS headers) or the function does (behind a gateway without CORS support, e.g. an emulator).
//!
//! A preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) is answered 204 before
//! routing, with the `Access-Control-Allow-*` headers only for an allowed origin; any other
//! response gets `Access-Control-Allow-Origin` for an allowed origin. A disallowed origin gets no
//! `Access-Control-*` header at all, and the browser refuses the response.

use super::ROUTES;
use http::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_METHOD, ORIGIN, VARY,
};
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};

/// The request headers a browser may send: the SigV4 signature's and the JSON body's.
pub const ALLOW_HEADERS: &[&str] = &[
    "authorization",
    "content-type",
    "x-amz-content-sha256",
    "x-amz-date",
    "x-amz-security-token",
];

/// How long a browser may cache a preflight's answer, in seconds.
pub const MAX_AGE_SECONDS: u32 = 600;

/// The methods the API serves (those of `ROUTES`), sorted, each once.
pub fn allow_methods() -> Vec<&'static str> {
    let mut methods: Vec<&'static str> = ROUTES.iter().map(|r| r.method).collect();
    methods.sort_unstable();
    methods.dedup();
    methods
}

/// An origin as browsers serialize it in `Origin` (`scheme://host[:port]`, lowercase, the
/// scheme's default port left out), or `*`; `None` for anything else (a path, credentials,
/// another scheme, `null`).
pub fn normalize_origin(origin: &str) -> Option<String> {
    let origin = origin.trim();
    if origin == "*" {
        return Some(origin.to_string());
    }
    let url = url::Url::parse(origin).ok()?;
    let bare = matches!(url.scheme(), "http" | "https")
        && url.username().is_empty()
        && url.password().is_none()
        && url.path() == "/"
        && url.query().is_none()
        && url.fragment().is_none();
    bare.then(|| url.origin().ascii_serialization())
}

/// The CORS policy: which origins may call the API from a browser. The default allows none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cors {
    /// Normalized; `*` allows every origin.
    origins: Vec<String>,
}

impl Cors {
    /// The policy for these origins; the first one that is not an origin is the error.
    pub fn new<I, S>(origins: I) -> Result<Self, String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let origins = origins
            .into_iter()
            .map(|o| normalize_origin(o.as_ref()).ok_or_else(|| o.as_ref().to_string()))
            .collect::<Result<_, _>>()?;
        Ok(Self { origins })
    }

    pub fn is_enabled(&self) -> bool {
        !self.origins.is_empty()
    }

    fn any_origin(&self) -> bool {
        self.origins.iter().any(|o| o == "*")
    }

    /// The `Access-Control-Allow-Origin` value for this request: its `Origin` when allowed
    /// (`*` when every origin is), `None` without an allowed `Origin`.
    fn allowed_origin(&self, request: &HeaderMap) -> Option<HeaderValue> {
        let origin = request.get(ORIGIN)?;
        if self.any_origin() {
            return Some(HeaderValue::from_static("*"));
        }
        let normalized = normalize_origin(origin.to_str().ok()?)?;
        self.origins.contains(&normalized).then(|| origin.clone())
    }

    /// The answer to a CORS preflight; `None` when CORS is off or the request is not a preflight
    /// (it is then routed like any other: `OPTIONS` on a known path is a 405).
    pub fn preflight(&self, method: &Method, request: &HeaderMap) -> Option<Response<String>> {
        let is_preflight = method == Method::OPTIONS
            && request.contains_key(ORIGIN)
            && request.contains_key(ACCESS_CONTROL_REQUEST_METHOD);
        if !self.is_enabled() || !is_preflight {
            return None;
        }
        let mut resp = Response::new(String::new());
        *resp.status_mut() = StatusCode::NO_CONTENT;
        if let Some(origin) = self.allowed_origin(request) {
            let h = resp.headers_mut();
            h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            h.insert(ACCESS_CONTROL_ALLOW_METHODS, listed(&allow_methods()));
            h.insert(ACCESS_CONTROL_ALLOW_HEADERS, listed(ALLOW_HEADERS));
            h.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from(MAX_AGE_SECONDS));
        }
        self.vary(resp.headers_mut());
        Some(resp)
    }

    /// Adds the CORS headers to a routed response: `Access-Control-Allow-Origin` for an allowed
    /// origin, and `Vary: Origin` whenever the answer depends on the origin.
    pub fn apply<B>(&self, request: &HeaderMap, resp: &mut Response<B>) {
        if !self.is_enabled() {
            return;
        }
        if let Some(origin) = self.allowed_origin(request) {
            resp.headers_mut()
                .insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        }
        self.vary(resp.headers_mut());
    }

    /// Caches must key the answer on `Origin`, unless every origin gets the same (`*`).
    fn vary(&self, headers: &mut HeaderMap) {
        if !self.any_origin() {
            headers.append(VARY, HeaderValue::from_static("origin"));
        }
    }
}

/// A comma-separated header value of method or header names.
fn listed(names: &[&str]) -> HeaderValue {
    HeaderValue::from_str(&names.join(", "))
        .expect("method and header names are ASCII tokens, valid in a header value")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_compared_as_browsers_serialize_them() {
        assert_eq!(
            normalize_origin("HTTPS://Console.Example.com:443/").as_deref(),
            Some("https://console.example.com")
        );
        assert_eq!(
            normalize_origin(" http://localhost:3000 ").as_deref(),
            Some("http://localhost:3000")
        );
        assert_eq!(normalize_origin("*").as_deref(), Some("*"));
        for not_an_origin in [
            "console.example.com",
            "https://console.example.com/app",
            "https://user@console.example.com",
            "https://console.example.com/?q=1",
            "ftp://console.example.com",
            "null",
            "",
        ] {
            assert_eq!(normalize_origin(not_an_origin), None, "{not_an_origin}");
        }
    }

    #[test]
    fn a_policy_names_the_entry_that_is_not_an_origin() {
        assert_eq!(
            Cors::new(["https://a.example", "a.example"]),
            Err("a.example".to_string())
        );
        assert!(!Cors::new(Vec::<String>::new()).unwrap().is_enabled());
    }
}
