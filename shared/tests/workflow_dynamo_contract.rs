//! The `WorkflowStore` / `SampleStore` contract (`perfagent::workflow::ports`), checked against the
//! in-memory store always and against the DynamoDB store when an endpoint is given:
//!
//! ```text
//! PERFAGENT_TEST_DYNAMODB_ENDPOINT=http://127.0.0.1:4566 \
//!     cargo test -p perfagent --test workflow_dynamo_contract -- --ignored
//! ```
//!
//! Each DynamoDB run creates a table of its own (the agent's layout: `pk`/`sk`, index `gsi1`) and
//! deletes it afterwards.

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType,
};
use perfagent::instance::{EngineConfig, Id, Instance};
use perfagent::optimize::Recommendation;
use perfagent::snapshot::{Canonical, Engine, Histogram, MetricValue, ModelMetrics};
use perfagent::store::dynamo::DynamoStore;
use perfagent::store::InstanceStore;
use perfagent::workflow::memory::MemoryWorkflowStore;
use perfagent::workflow::{
    AuditEntry, Event, Params, Role, Sample, SampleStore, Stage, State, Workflow, WorkflowFilter,
    WorkflowStore, WorkflowStoreError,
};
use serde_json::json;
use std::collections::BTreeMap;

const T0: i64 = 1_800_000_000_000;

fn id(s: &str) -> Id {
    Id::parse("id", s).unwrap()
}

fn recommendation() -> Recommendation {
    serde_json::from_value(json!({
        "id": "r1", "engine": "vllm", "optimizer": "BATCHING", "bottleneck": "QUEUE_BUILDUP",
        "title": "t", "knob": "max_num_seqs", "flag": "--max-num-seqs",
        "current": {"value": 128, "assumed": false}, "proposed": 256,
        "changes": {"max_num_seqs": 256}, "rationale": "r", "expected_impact": [],
        "risk": {"level": "LOW", "description": "d"}, "priority": 1
    }))
    .unwrap()
}

fn entry(at_ms: i64, reason: &str) -> AuditEntry {
    AuditEntry {
        at_ms,
        actor: "test".into(),
        event: Event::Note,
        from: State::PendingApproval,
        to: State::PendingApproval,
        stage: Stage::Approval,
        step: 0,
        reason: reason.into(),
    }
}

fn workflow(name: &str, group: &str, created_ms: i64) -> Workflow {
    let mut wf = Workflow::new(
        id(name),
        id(group),
        recommendation(),
        false,
        Params::default(),
        created_ms,
    );
    wf.audit.push(entry(created_ms, "created"));
    wf
}

fn sample(step: u32, round: u32, instance: &str, role: Role, ttft_count: f64) -> Sample {
    Sample {
        step,
        round,
        instance: id(instance),
        role,
        at_ms: T0 + i64::from(round) * 60_000,
        models: vec![ModelMetrics {
            model: "m".into(),
            metrics: BTreeMap::from([
                (Canonical::RequestSuccessTotal, MetricValue::Number(100.0)),
                (
                    Canonical::TtftSeconds,
                    MetricValue::Histogram(Histogram {
                        count: ttft_count,
                        sum: ttft_count * 0.2,
                        buckets: vec![(0.1, 1.0), (0.5, ttft_count), (f64::INFINITY, ttft_count)],
                    }),
                ),
            ]),
        }],
        error: None,
    }
}

fn ids(v: &[Workflow]) -> Vec<String> {
    v.iter().map(|w| w.id.to_string()).collect()
}

/// The whole contract, in order, on one store.
async fn contract<S: WorkflowStore + SampleStore>(store: &S) {
    // create: version 1, the group held; a second workflow of the group is refused.
    let a = store.create(&workflow("wf-a", "chat", T0)).await.unwrap();
    assert_eq!(a.version, 1);
    assert_eq!(store.active(&id("chat")).await.unwrap(), Some(id("wf-a")));
    assert_eq!(
        store.create(&workflow("wf-b", "chat", T0 + 1)).await,
        Err(WorkflowStoreError::GroupBusy {
            group: id("chat"),
            active: id("wf-a"),
        })
    );
    assert_eq!(
        store.get(&id("wf-b")).await.unwrap(),
        None,
        "nothing half-written"
    );
    assert_eq!(
        store.create(&workflow("wf-a", "search", T0 + 2)).await,
        Err(WorkflowStoreError::AlreadyExists(id("wf-a")))
    );
    assert_eq!(
        store.active(&id("search")).await.unwrap(),
        None,
        "no lock taken"
    );

    // update: only from the stored version; the trail grows in the same write.
    let mut next = a.clone();
    next.state = State::Approved;
    next.task_token = Some("token".into());
    let stored = store
        .update(&next, &[entry(T0 + 10, "approved")])
        .await
        .unwrap();
    assert_eq!(stored.version, 2);
    assert_eq!(stored.state, State::Approved);
    assert_eq!(stored.task_token.as_deref(), Some("token"));
    assert_eq!(
        stored
            .audit
            .iter()
            .map(|e| e.reason.as_str())
            .collect::<Vec<_>>(),
        vec!["created", "approved"]
    );
    let stale = store.update(&next, &[entry(T0 + 11, "stale")]).await;
    assert_eq!(
        stale,
        Err(WorkflowStoreError::Conflict {
            id: id("wf-a"),
            expected: 1,
        })
    );
    assert_eq!(store.get(&id("wf-a")).await.unwrap().unwrap(), stored);
    let mut ghost = workflow("wf-ghost", "x", T0);
    ghost.version = 1;
    assert_eq!(
        store.update(&ghost, &[]).await,
        Err(WorkflowStoreError::NotFound(id("wf-ghost")))
    );

    // A note changes nothing but the trail; a write without entries keeps the trail.
    store
        .append_audit(&id("wf-a"), &entry(T0 + 12, "note"))
        .await
        .unwrap();
    let got = store.get(&id("wf-a")).await.unwrap().unwrap();
    assert_eq!(got.version, 2);
    assert_eq!(got.audit.len(), 3);
    let quiet = store.update(&got, &[]).await.unwrap();
    assert_eq!((quiet.version, quiet.audit.len()), (3, 3));
    assert_eq!(
        store.append_audit(&id("wf-ghost"), &entry(T0, "x")).await,
        Err(WorkflowStoreError::NotFound(id("wf-ghost")))
    );

    // release: only by the holder, and repeatable.
    store
        .release_group(&id("chat"), &id("wf-other"))
        .await
        .unwrap();
    assert_eq!(store.active(&id("chat")).await.unwrap(), Some(id("wf-a")));
    let mut ended = quiet.clone();
    ended.state = State::Rejected;
    let ended = store
        .update(&ended, &[entry(T0 + 13, "rejected")])
        .await
        .unwrap();
    store.release_group(&id("chat"), &id("wf-a")).await.unwrap();
    store.release_group(&id("chat"), &id("wf-a")).await.unwrap();
    assert_eq!(store.active(&id("chat")).await.unwrap(), None);
    store
        .create(&workflow("wf-c", "chat", T0 + 20))
        .await
        .unwrap();
    store
        .create(&workflow("wf-d", "search", T0 + 30))
        .await
        .unwrap();

    // list: newest first, by group, by state (live and ended), limited.
    let all = store.list(&WorkflowFilter::default()).await.unwrap();
    assert_eq!(ids(&all), vec!["wf-d", "wf-c", "wf-a"]);
    assert_eq!(all.last().unwrap(), &ended, "listed with the full trail");
    let chat = WorkflowFilter {
        group: Some(id("chat")),
        ..WorkflowFilter::default()
    };
    assert_eq!(ids(&store.list(&chat).await.unwrap()), vec!["wf-c", "wf-a"]);
    let pending = WorkflowFilter {
        state: Some(State::PendingApproval),
        ..WorkflowFilter::default()
    };
    assert_eq!(
        ids(&store.list(&pending).await.unwrap()),
        vec!["wf-d", "wf-c"]
    );
    let rejected_chat = WorkflowFilter {
        group: Some(id("chat")),
        state: Some(State::Rejected),
        limit: None,
    };
    assert_eq!(
        ids(&store.list(&rejected_chat).await.unwrap()),
        vec!["wf-a"]
    );
    let one = WorkflowFilter {
        limit: Some(1),
        ..WorkflowFilter::default()
    };
    assert_eq!(ids(&store.list(&one).await.unwrap()), vec!["wf-d"]);

    // samples: keyed by (workflow, step, round, instance); writing a key again replaces it.
    let wf = id("wf-c");
    store
        .put_samples(
            &wf,
            &[
                sample(0, 0, "a", Role::Canary, 10.0),
                sample(0, 0, "b", Role::Baseline, 10.0),
                sample(0, 1, "a", Role::Canary, 20.0),
                sample(1, 0, "a", Role::Canary, 5.0),
            ],
        )
        .await
        .unwrap();
    let mut failed = sample(0, 1, "a", Role::Canary, 30.0);
    failed.models.clear();
    failed.error = Some("timeout".into());
    store
        .put_samples(&wf, std::slice::from_ref(&failed))
        .await
        .unwrap();
    let mut step0 = store.samples(&wf, 0).await.unwrap();
    step0.sort_by(|x, y| (x.round, &x.instance).cmp(&(y.round, &y.instance)));
    assert_eq!(
        step0,
        vec![
            sample(0, 0, "a", Role::Canary, 10.0),
            sample(0, 0, "b", Role::Baseline, 10.0),
            failed,
        ]
    );
    assert_eq!(store.samples(&wf, 1).await.unwrap().len(), 1);
    assert!(store.samples(&id("wf-a"), 0).await.unwrap().is_empty());
}

#[tokio::test]
async fn the_in_memory_store_keeps_the_contract() {
    contract(&MemoryWorkflowStore::new()).await;
}

async fn dynamo(endpoint: &str) -> (aws_sdk_dynamodb::Client, String) {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_credential_types::Credentials::new(
            "test", "test", None, None, "static",
        ))
        .load()
        .await;
    let client = aws_sdk_dynamodb::Client::new(&config);
    let table = format!("perfagent-contract-{:08x}", rand::random::<u32>());
    let attr = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .unwrap()
    };
    let key = |name: &str, kind| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
            .unwrap()
    };
    client
        .create_table()
        .table_name(&table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attr("pk"))
        .attribute_definitions(attr("sk"))
        .attribute_definitions(attr("gsi1pk"))
        .attribute_definitions(attr("gsi1sk"))
        .key_schema(key("pk", KeyType::Hash))
        .key_schema(key("sk", KeyType::Range))
        .global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name("gsi1")
                .key_schema(key("gsi1pk", KeyType::Hash))
                .key_schema(key("gsi1sk", KeyType::Range))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::All)
                        .build(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    (client, table)
}

#[tokio::test]
#[ignore = "needs a DynamoDB endpoint: PERFAGENT_TEST_DYNAMODB_ENDPOINT=http://127.0.0.1:4566"]
async fn the_dynamodb_store_keeps_the_contract() {
    let endpoint = std::env::var("PERFAGENT_TEST_DYNAMODB_ENDPOINT")
        .expect("PERFAGENT_TEST_DYNAMODB_ENDPOINT is not set");
    let (client, table) = dynamo(&endpoint).await;
    let store = DynamoStore::new(client.clone(), &table);
    contract(&store).await;

    // A rollout's config reaches the registry document, and nothing else of it changes.
    let instance = Instance {
        id: id("a"),
        engine: Engine::Vllm,
        metrics_url: "http://10.0.0.7:8000/metrics".into(),
        model: None,
        group: id("chat"),
        labels: BTreeMap::new(),
        config: EngineConfig::from([("max_num_seqs".to_string(), json!(128))]),
        created_at_ms: T0,
        updated_at_ms: T0,
    };
    store.create_instance(&instance).await.unwrap();
    let new = EngineConfig::from([("max_num_seqs".to_string(), json!(256))]);
    store.update_config(&id("a"), &new, T0 + 5).await.unwrap();
    let got = store
        .get_instance(&id("a"))
        .await
        .unwrap()
        .unwrap()
        .instance;
    assert_eq!(
        got,
        Instance {
            config: new.clone(),
            updated_at_ms: T0 + 5,
            ..instance
        }
    );
    assert!(matches!(
        store.update_config(&id("zz"), &new, T0).await,
        Err(perfagent::store::StoreError::NotFound(_))
    ));

    client
        .delete_table()
        .table_name(&table)
        .send()
        .await
        .unwrap();
}
