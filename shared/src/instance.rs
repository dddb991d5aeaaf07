//! The instance registry's domain: what a registered inference server is, parsed at the edge so an
//! invalid id, engine or URL cannot exist inside the agent.

use crate::netguard::{NetGuard, UrlRejected};
use crate::snapshot::Engine;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Longest id we accept; ids end up in DynamoDB keys and URLs.
const ID_MAX_LEN: usize = 64;
const LABELS_MAX: usize = 32;
const LABEL_VALUE_MAX_LEN: usize = 256;
const CONFIG_KEYS_MAX: usize = 64;

/// A validated identifier: `[a-z0-9][a-z0-9._-]{0,63}` (lower case so keys never collide by case).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Id(String);

impl Id {
    pub fn parse(kind: &'static str, s: &str) -> Result<Self, InvalidInstance> {
        let ok = !s.is_empty()
            && s.len() <= ID_MAX_LEN
            && s.bytes()
                .next()
                .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            && s.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
            });
        if ok {
            Ok(Id(s.to_string()))
        } else {
            Err(InvalidInstance::Field {
                field: kind,
                reason: format!(
                    "{s:?} is not a valid {kind}: use 1 to {ID_MAX_LEN} characters from a-z, 0-9, '.', '_', '-', starting with a letter or digit"
                ),
            })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Id {
    type Error = InvalidInstance;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Id::parse("id", &s)
    }
}

impl From<Id> for String {
    fn from(id: Id) -> String {
        id.0
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// In OpenAPI an id is a string with the pattern `parse` enforces.
impl utoipa::PartialSchema for Id {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some("^[a-z0-9][a-z0-9._-]*$"))
            .min_length(Some(1))
            .max_length(Some(ID_MAX_LEN))
            .description(Some(
                "An instance, group or similar id: lower-case letters, digits, '.', '_', '-', \
                 starting with a letter or digit",
            ))
            .into()
    }
}

impl utoipa::ToSchema for Id {}

/// An engine's configuration as the engine names it (e.g. vLLM `max_num_seqs`, TGI
/// `max_batch_total_tokens`, SGLang `mem_fraction_static`). Values are JSON scalars.
pub type EngineConfig = BTreeMap<String, serde_json::Value>;

/// The OpenAPI schema of an [`EngineConfig`]: an object of scalars (a type alias cannot carry a
/// derived schema, so fields of this type name this function with `schema_with`).
pub fn engine_config_schema() -> utoipa::openapi::Object {
    use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .additional_properties(Some(ObjectBuilder::new().schema_type(SchemaType::from_iter([
            Type::String,
            Type::Number,
            Type::Boolean,
            Type::Null,
        ]))))
        .description(Some(
            "The engine's configuration as the engine names it (e.g. vLLM max_num_seqs): key → scalar",
        ))
        .build()
}

/// A registered inference server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Instance {
    pub id: Id,
    pub engine: Engine,
    pub metrics_url: String,
    /// The model it serves, when the operator knows it (the scrape tells us too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    pub group: Id,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    #[schema(schema_with = engine_config_schema)]
    pub config: EngineConfig,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// The body of `POST /api/v1/instances`, before validation.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewInstance {
    /// 1 to 64 characters from a-z, 0-9, '.', '_', '-', starting with a letter or digit.
    #[schema(value_type = Id)]
    pub id: String,
    /// `vllm`, `tgi` or `sglang` (any case).
    pub engine: String,
    /// The server's Prometheus endpoint; must be in the agent's allowed networks.
    pub metrics_url: String,
    #[serde(default)]
    pub model: Option<String>,
    /// The deployment group (an id like `id`).
    #[serde(default = "default_group")]
    #[schema(value_type = Id, default = "default")]
    pub group: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    #[schema(schema_with = engine_config_schema)]
    pub config: EngineConfig,
}

fn default_group() -> String {
    "default".to_string()
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvalidInstance {
    #[error("{field}: {reason}")]
    Field { field: &'static str, reason: String },
    #[error("metrics_url: {0}")]
    Url(#[from] UrlRejected),
}

impl InvalidInstance {
    pub fn field(&self) -> &'static str {
        match self {
            InvalidInstance::Field { field, .. } => field,
            InvalidInstance::Url(_) => "metrics_url",
        }
    }
}

impl NewInstance {
    /// Validates every field; the URL against the network guard (scheme, forbidden and allowed networks).
    pub fn validate(self, guard: &NetGuard, now_ms: i64) -> Result<Instance, InvalidInstance> {
        let id = Id::parse("id", &self.id)?;
        let group = Id::parse("group", &self.group)?;
        let engine = self
            .engine
            .parse::<Engine>()
            .map_err(|e| InvalidInstance::Field {
                field: "engine",
                reason: e.to_string(),
            })?;
        guard.check_url(&self.metrics_url)?;
        if self.labels.len() > LABELS_MAX
            || self
                .labels
                .iter()
                .any(|(k, v)| k.is_empty() || k.len() > ID_MAX_LEN || v.len() > LABEL_VALUE_MAX_LEN)
        {
            return Err(InvalidInstance::Field {
                field: "labels",
                reason: format!(
                    "at most {LABELS_MAX} labels, names 1 to {ID_MAX_LEN} characters, values up to {LABEL_VALUE_MAX_LEN}"
                ),
            });
        }
        if self.config.len() > CONFIG_KEYS_MAX
            || self.config.values().any(|v| v.is_object() || v.is_array())
        {
            return Err(InvalidInstance::Field {
                field: "config",
                reason: format!(
                    "at most {CONFIG_KEYS_MAX} keys, each a string, number, boolean or null"
                ),
            });
        }
        if let Some(model) = &self.model {
            if model.is_empty() || model.len() > LABEL_VALUE_MAX_LEN {
                return Err(InvalidInstance::Field {
                    field: "model",
                    reason: format!("1 to {LABEL_VALUE_MAX_LEN} characters"),
                });
            }
        }
        Ok(Instance {
            id,
            engine,
            metrics_url: self.metrics_url,
            model: self.model,
            group,
            labels: self.labels,
            config: self.config,
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(id: &str, engine: &str, url: &str) -> NewInstance {
        NewInstance {
            id: id.into(),
            engine: engine.into(),
            metrics_url: url.into(),
            model: None,
            group: "chat-prod".into(),
            labels: BTreeMap::new(),
            config: EngineConfig::new(),
        }
    }

    #[test]
    fn a_well_formed_instance_is_accepted() {
        let i = new("vllm-1", "vLLM", "http://10.0.0.5:8000/metrics")
            .validate(&NetGuard::default(), 7)
            .unwrap();
        assert_eq!(i.engine, Engine::Vllm);
        assert_eq!(i.group.as_str(), "chat-prod");
        assert_eq!(i.created_at_ms, 7);
    }

    #[test]
    fn ids_with_upper_case_slashes_or_too_long_are_refused() {
        for bad in ["", "A", "a/b", "-a", &"a".repeat(65), "a b", "ä"] {
            let err = new(bad, "vllm", "http://10.0.0.5/metrics")
                .validate(&NetGuard::default(), 0)
                .unwrap_err();
            assert_eq!(err.field(), "id", "{bad:?}");
        }
    }

    #[test]
    fn an_unknown_engine_names_the_known_ones() {
        let err = new("a", "triton", "http://10.0.0.5/metrics")
            .validate(&NetGuard::default(), 0)
            .unwrap_err();
        assert_eq!(err.field(), "engine");
        assert!(err.to_string().contains("vllm, tgi, sglang"));
    }

    #[test]
    fn a_metadata_url_is_refused() {
        let err = new("a", "tgi", "http://169.254.169.254/latest/meta-data")
            .validate(&NetGuard::default(), 0)
            .unwrap_err();
        assert_eq!(err.field(), "metrics_url");
    }

    #[test]
    fn nested_config_values_are_refused() {
        let mut n = new("a", "tgi", "http://10.0.0.5/metrics");
        n.config.insert("x".into(), serde_json::json!({"y": 1}));
        assert_eq!(
            n.validate(&NetGuard::default(), 0).unwrap_err().field(),
            "config"
        );
    }
}
