//! The performance agent's library: parsing inference servers' metrics, engine adapters, analysis,
//! recommendations, the workflow model, and the adapters (DynamoDB, HTTP) behind their ports.

pub mod analysis;
pub mod analyzer;
pub mod api;
pub mod breaker;
pub mod cli;
pub mod client;
pub mod clock;
pub mod collect;
pub mod config;
pub mod dispatch;
pub mod engine;
pub mod instance;
pub mod lambda_invoke;
pub mod netguard;
pub mod optimize;
pub mod orchestrator;
pub mod probe;
pub mod promtext;
pub mod scrape;
pub mod sfn;
pub mod snapshot;
pub mod store;
pub mod window;
pub mod workflow;
