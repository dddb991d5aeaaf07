//! The shard fan-out adapter: an asynchronous (`Event`) invoke of the collector function.

use crate::dispatch::ShardInvoker;
use async_trait::async_trait;
use aws_sdk_lambda::error::DisplayErrorContext;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;

pub struct LambdaShardInvoker {
    client: aws_sdk_lambda::Client,
    function_name: String,
}

impl LambdaShardInvoker {
    pub fn new(client: aws_sdk_lambda::Client, function_name: String) -> Self {
        LambdaShardInvoker {
            client,
            function_name,
        }
    }
}

#[async_trait]
impl ShardInvoker for LambdaShardInvoker {
    async fn invoke_async(&self, payload: Vec<u8>) -> Result<(), String> {
        if self.function_name.is_empty() {
            return Err(
                "COLLECTOR_FUNCTION_NAME is not set, so shards cannot be fanned out".into(),
            );
        }
        self.client
            .invoke()
            .function_name(&self.function_name)
            .invocation_type(InvocationType::Event)
            .payload(Blob::new(payload))
            .send()
            .await
            .map_err(|e| DisplayErrorContext(&e).to_string())?;
        Ok(())
    }
}
