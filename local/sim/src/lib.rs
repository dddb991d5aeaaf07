//! Simulators for running the agent without GPUs: a fleet of vLLM, TGI and SGLang servers whose
//! `/metrics` evolve from a seeded queueing model, with an admin API for scenarios and faults.

pub mod config;
pub mod fleet;
pub mod hist;
pub mod model;
pub mod numfmt;
pub mod orchestrator;
pub mod render;
pub mod rng;
pub mod server;
