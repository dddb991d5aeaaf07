//! The performance agent's library: parsing inference servers' metrics, engine adapters, analysis,
//! recommendations, the workflow model, and the adapters (DynamoDB, HTTP) behind their ports.

pub mod breaker;
pub mod engine;
pub mod instance;
pub mod netguard;
pub mod promtext;
pub mod scrape;
pub mod snapshot;
pub mod window;
