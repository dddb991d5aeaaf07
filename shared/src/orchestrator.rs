//! The orchestrator contract over HTTP: the client of `docs/orchestrator-contract.yaml` and its request signatures.
