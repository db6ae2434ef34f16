//! The webhook runtime: POST the current result to an HTTP endpoint.

use super::{ExecutorError, Invocation, Outcome};
use crate::plugin::Limits;

/// Sends webhook requests.
pub struct WebhookRuntime {
    client: reqwest::Client,
}

/// A checked endpoint.
pub struct WebhookPlugin {
    url: reqwest::Url,
}

impl WebhookRuntime {
    pub(super) fn new() -> Result<WebhookRuntime, ExecutorError> {
        todo!()
    }

    pub(super) fn prepare(&self, url: &str) -> Result<WebhookPlugin, String> {
        todo!("{url}")
    }

    pub(super) async fn invoke(
        &self,
        plugin: &WebhookPlugin,
        limits: &Limits,
        invocation: Invocation<'_>,
    ) -> Outcome {
        todo!("{:?} {:?} {limits:?} {invocation:?}", self.client, plugin.url)
    }
}
