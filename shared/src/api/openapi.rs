//! The API's OpenAPI 3.1 document, generated from the code and served at
//! `GET /api/v1/openapi.json`: each handler's `#[utoipa::path]` attribute gives its method, path,
//! parameters, request body and every response; the bodies' schemas come from `ToSchema` derives
//! on the very types the routes serialize.
//!
//! Adding a route:
//! 1. its handler gets a `#[utoipa::path(...)]` attribute (copy a neighbour's: method, `path`,
//!    `tag`, `operation_id`, `params`, `request_body`, every status it answers, errors with
//!    `body = ErrorBody`; a route that needs no signature adds `security(())`);
//! 2. the router's table `routes::ROUTES` gets one line (method, path, `Op`), and `route` a match
//!    arm for the new `Op`;
//! 3. the document gets **one line**: the handler's path in `paths(...)` below, e.g.
//!    `workflow_routes::start_workflow,`.
//!
//! The types named in `body = ...` and `request_body = ...` derive `utoipa::ToSchema` (domain types
//! take it as a separate `#[derive(utoipa::ToSchema)]` line; it follows their serde attributes),
//! and a body the route builds ad hoc becomes a struct in `api::body` that the handler serializes,
//! so the document and the answer come from one type. Schemas it references are collected on
//! their own. `tests/api_openapi.rs` fails while the router's table and the document disagree;
//! add a call of the new route there to validate its answers against the document.

use super::analysis_routes;
use super::routes::{self, reply, Routed};
use super::workflow_routes;
use http::StatusCode;
use std::sync::OnceLock;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::OpenApi;

/// The name of the security scheme every signed route requires (the `security` attribute below
/// must spell it out: attributes take literals).
pub const SIGV4: &str = "sigv4";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Performance agent API",
        description = "Registers LLM inference servers (vLLM, TGI, SGLang), serves their normalized \
metrics, bottleneck analyses, recommendations and deployment-group configuration, and rolls \
recommendations out through approved, canary-judged workflows. Every route but \
the health check and this document needs an AWS Signature Version 4 (IAM) signature. Every error \
is a JSON body `{\"code\", \"message\", \"details\"}`. How to call it: docs/api.md.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        routes::health,
        routes::health_detailed,
        routes::metrics,
        serve,
        routes::list_instances,
        routes::create_instance,
        routes::get_instance,
        routes::delete_instance,
        routes::snapshots,
        routes::instance_window,
        routes::collect_now,
        analysis_routes::detect_bottlenecks,
        analysis_routes::recommend_now,
        analysis_routes::bottlenecks,
        analysis_routes::recommendations,
        analysis_routes::recommendation,
        analysis_routes::group_config,
        analysis_routes::put_group_config,
        analysis_routes::group_analysis,
        workflow_routes::list_workflows,
        workflow_routes::start_workflow,
        workflow_routes::get_workflow,
        workflow_routes::approve_workflow,
        workflow_routes::reject_workflow,
    ),
    components(schemas(super::body::ErrorBody)),
    modifiers(&SigV4Scheme),
    security(("sigv4" = [])),
    tags(
        (name = "health", description = "Liveness and readiness"),
        (name = "instances", description = "The registry of inference servers and their stored scrapes"),
        (name = "metrics", description = "Collection on demand and the agent's own metrics"),
        (name = "analysis", description = "Bottlenecks and recommendations, on stored windows or a posted scrape"),
        (name = "recommendations", description = "Group recommendations the scheduled analyzer proposes"),
        (name = "groups", description = "Deployment groups: configuration and latest analysis"),
        (name = "workflows", description = "Optimization rollouts: start one from a group recommendation, follow it, approve or reject it"),
        (name = "meta", description = "This document"),
    ),
)]
struct ApiDoc;

/// Declares the SigV4 scheme the `security` requirements name.
struct SigV4Scheme;

impl utoipa::Modify for SigV4Scheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                SIGV4,
                SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                    "Authorization",
                    "AWS Signature Version 4 (IAM): sign each request for the `execute-api` \
                     service with credentials allowed `execute-api:Invoke` on the API (the \
                     `Authorization`, `X-Amz-Date` and, with temporary credentials, \
                     `X-Amz-Security-Token` headers). awscurl, the `perfagent` CLI and \
                     `perfagent::client::ApiClient` sign for you.",
                ))),
            );
    }
}

/// The document, built once per process.
pub fn document() -> &'static utoipa::openapi::OpenApi {
    static DOC: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();
    DOC.get_or_init(ApiDoc::openapi)
}

/// This document.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "meta",
    operation_id = "openapi",
    security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", body = Object)),
)]
pub(super) fn serve() -> Routed {
    reply(StatusCode::OK, document())
}
