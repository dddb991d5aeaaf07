//! The HTTP function behind API Gateway: adapts each API Gateway (HTTP API, payload 2.0) event to
//! the transport-free API in `perfagent::api`.

use lambda_http::request::RequestContext;
use lambda_http::{service_fn, Body, Request, RequestExt, Response};
use perfagent::api::{self, ApiContext, ApiRequest, WorkflowApi};
use perfagent::config::Config;
use perfagent::orchestrator::HttpOrchestrator;
use perfagent::probe::AwsProbe;
use perfagent::scrape::Scraper;
use perfagent::sfn::StepFunctionsEngine;
use perfagent::store::dynamo::DynamoStore;
use perfagent::workflow::adapters::{ScrapeSampler, StoreDirectory, UnconfiguredOrchestrator};
use perfagent::workflow::{Clock, Deps, Orchestrator, Params, SystemClock};
use std::sync::Arc;
use tracing::Instrument;

/// The IAM principal API Gateway authenticated (routes with `AWS_IAM` authorization).
fn principal(req: &Request) -> Option<String> {
    match req.request_context() {
        RequestContext::ApiGatewayV2(ctx) => ctx.authorizer?.iam?.user_arn,
        _ => None,
    }
}

fn to_api_request(req: &Request) -> ApiRequest {
    let path = match req.raw_http_path() {
        "" => req.uri().path().to_string(),
        p => p.to_string(),
    };
    let query = req
        .query_string_parameters()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    ApiRequest {
        method: req.method().clone(),
        path,
        query,
        body: bytes::Bytes::copy_from_slice(req.body().as_ref()),
        principal: principal(req),
    }
}

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    perfagent_functions::init_logging();
    let config = Config::from_env()?;
    let sdk = perfagent_functions::aws_config().await;
    let store = Arc::new(DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        &config.table_name,
    ));
    let sfn = aws_sdk_sfn::Client::new(&sdk);
    let probe = AwsProbe {
        store: (*store).clone(),
        sfn: sfn.clone(),
        state_machine_arn: config.state_machine_arn.clone(),
    };
    let scraper = Scraper::new(config.guard.clone(), config.scrape)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    // Decisions report the workflow's status to the orchestrator; until one is configured the
    // reports fail (noted in the audit trail) and everything else works.
    let orchestrator: Arc<dyn Orchestrator> = match config.orchestrator.clone() {
        Some(c) => Arc::new(HttpOrchestrator::new(c, clock.clone())?),
        None => Arc::new(UnconfiguredOrchestrator),
    };
    let workflows = WorkflowApi {
        deps: Deps {
            workflows: store.clone(),
            samples: store.clone(),
            orchestrator,
            sampler: Arc::new(ScrapeSampler::new(
                scraper.clone(),
                config.collector.concurrency,
            )),
            directory: Arc::new(StoreDirectory::new(store.clone(), clock.clone())),
            clock,
            api_base_url: config.api_base_url.clone().unwrap_or_default(),
        },
        engine: Arc::new(StepFunctionsEngine::new(
            sfn,
            config.state_machine_arn.clone(),
        )),
        approvers: config.approver_principals.clone(),
        defaults: Params {
            approval_timeout_s: config.approval_timeout_s,
            ..Params::default()
        },
    };
    let ctx = ApiContext {
        store,
        guard: config.guard.clone(),
        scraper,
        snapshot_ttl_hours: config.collector.snapshot_ttl_hours,
        service: config.service_name.clone(),
        now_ms: perfagent::clock::now_ms,
        probe: Arc::new(probe),
        emit_emf: true,
        workflows,
    };
    let ctx = &ctx;
    let cors = &config.cors;
    lambda_http::run(service_fn(move |req: Request| {
        let span = tracing::info_span!(
            "request",
            request_id = %req.lambda_context().request_id,
            service = %ctx.service,
            cold_start = perfagent_functions::take_cold_start(),
            method = %req.method(),
        );
        async move {
            let resp = match cors.preflight(req.method(), req.headers()) {
                Some(preflight) => preflight,
                None => {
                    let mut resp = api::handle(ctx, to_api_request(&req)).await;
                    cors.apply(req.headers(), &mut resp);
                    resp
                }
            };
            tracing::info!(status = resp.status().as_u16(), "handled");
            let (parts, body) = resp.into_parts();
            Ok::<_, std::convert::Infallible>(Response::from_parts(parts, Body::Text(body)))
        }
        .instrument(span)
    }))
    .await
}
