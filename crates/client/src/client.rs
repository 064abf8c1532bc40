//! [`Client`]: the typed HTTP client for one node's `/v1` API.

use crate::api::{Admission, ChainClient, CommittedReceipt};
use crate::error::ClientError;
use basalt_rpc::json::{
    AccountJson, BlockJson, Encoding, ErrorResponse, ReceiptJson, SimulateRequest,
    SimulateResponse, SubmitRequest, SubmitResponse, TxStatusJson,
};
use basalt_rpc::{BlockAt, NodeStatus, Rejection};
use basalt_types::{Hash, PublicKey, SignedTx};
use futures::StreamExt;
use serde::de::DeserializeOwned;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Default deadline of one HTTP call (the node's own request deadline is also 10 s).
pub const REQUEST_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);
/// Default deadline for opening a TCP connection: on loopback or a LAN a refused or
/// unroutable endpoint should fail fast so a balancer can fail over.
pub const CONNECT_TIMEOUT_DEFAULT: Duration = Duration::from_secs(2);
/// Default interval between status polls when a receipt is awaited without a WebSocket.
pub const RECEIPT_POLL_INTERVAL_DEFAULT: Duration = Duration::from_millis(250);
/// Longest error body quoted in an error message, bytes.
const ERROR_BODY_QUOTE_MAX: usize = 256;

/// How a [`Client`] behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// Deadline of one whole HTTP call (connect, send, read the answer).
    pub timeout: Duration,
    /// Deadline for opening a connection.
    pub connect_timeout: Duration,
    /// Interval between status polls in [`Client::wait_receipt_polling`].
    pub receipt_poll_interval: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            timeout: REQUEST_TIMEOUT_DEFAULT,
            connect_timeout: CONNECT_TIMEOUT_DEFAULT,
            receipt_poll_interval: RECEIPT_POLL_INTERVAL_DEFAULT,
        }
    }
}

/// A typed async HTTP client for one node's `/v1` API. Cheap to clone (the connection pool
/// is shared).
///
/// Every call is bounded by [`ClientConfig::timeout`] and fails with a typed
/// [`ClientError`]; 503 and 429 answers come back as [`ClientError::Overloaded`], other
/// error answers as [`ClientError::Http`] with the server's code and message.
#[derive(Debug, Clone)]
pub struct Client {
    base: Arc<str>,
    http: reqwest::Client,
    config: ClientConfig,
}

/// `url` without trailing slashes, checked to be plain `http://` (the SDK is built without
/// TLS: put a TLS-terminating proxy in front of nodes on untrusted networks).
pub(crate) fn normalize_base_url(url: &str) -> Result<String, ClientError> {
    let trimmed = url.trim().trim_end_matches('/');
    let Some(rest) = trimmed.strip_prefix("http://") else {
        return Err(ClientError::Invalid {
            message: format!("endpoint {url:?} is not an http:// URL"),
        });
    };
    if rest.is_empty() {
        return Err(ClientError::Invalid {
            message: format!("endpoint {url:?} has no host"),
        });
    }
    Ok(trimmed.to_owned())
}

impl Client {
    /// A client for the node at `base_url` (e.g. `http://127.0.0.1:26650`) with the
    /// default configuration.
    pub fn new(base_url: &str) -> Result<Client, ClientError> {
        Client::with_config(base_url, ClientConfig::default())
    }

    /// A client for the node at `base_url` with `config`.
    pub fn with_config(base_url: &str, config: ClientConfig) -> Result<Client, ClientError> {
        let base = normalize_base_url(base_url)?;
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.connect_timeout)
            .build()
            .map_err(|error| ClientError::Invalid {
                message: format!("building the HTTP client: {error}"),
            })?;
        Ok(Client {
            base: base.into(),
            http,
            config,
        })
    }

    /// The node's base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// `POST /v1/txs`: submit signed transactions; one result per transaction, same order:
    /// its hash when the node's mempool took it, or the node's typed rejection
    /// (`duplicate`, `stale_nonce`, `mempool_full`, `bad_signature`, ...).
    pub async fn submit(&self, txs: &[SignedTx]) -> Result<Vec<Admission>, ClientError> {
        if txs.is_empty() {
            return Ok(Vec::new());
        }
        let request = SubmitRequest {
            txs: txs.iter().map(|tx| hex::encode(tx.to_bytes())).collect(),
            encoding: Encoding::Hex,
        };
        let response: SubmitResponse = self.post_json("/v1/txs", &request).await?;
        if response.results.len() != txs.len() {
            return Err(self.decode_error(format!(
                "{} results for {} transactions",
                response.results.len(),
                txs.len()
            )));
        }
        Ok(response
            .results
            .into_iter()
            .map(|result| match (result.accepted, result.error) {
                (true, _) => Ok(result.hash),
                (false, Some(error)) => Err(Rejection::new(error.code, error.message)),
                (false, None) => Err(Rejection::new("rejected", "refused without a reason")),
            })
            .collect())
    }

    /// `GET /v1/txs/{hash}`: pending, committed (with height, index and receipt), rejected
    /// (with the reason) or unknown to this node.
    pub async fn tx_status(&self, hash: Hash) -> Result<TxStatusJson, ClientError> {
        self.get_json(&format!("/v1/txs/{hash}")).await
    }

    /// `GET /v1/blocks/{height|latest}`.
    pub async fn block(&self, at: BlockAt) -> Result<BlockJson, ClientError> {
        let path = match at {
            BlockAt::Latest => "/v1/blocks/latest".to_owned(),
            BlockAt::Height(height) => format!("/v1/blocks/{height}"),
        };
        self.get_json(&path).await
    }

    /// `GET /v1/accounts/{address}`: next nonce and balances at the latest height, with a
    /// state proof (returned, not verified here).
    pub async fn account(&self, address: PublicKey) -> Result<AccountJson, ClientError> {
        self.get_json(&format!("/v1/accounts/{address}")).await
    }

    /// `GET /v1/status`.
    pub async fn status(&self) -> Result<NodeStatus, ClientError> {
        self.get_json("/v1/status").await
    }

    /// `POST /v1/simulate`: the receipt `tx` would get if executed now as the sender's next
    /// transaction (its nonce must be the account's next nonce). Nothing is submitted.
    pub async fn simulate(&self, tx: &SignedTx) -> Result<ReceiptJson, ClientError> {
        let request = SimulateRequest {
            tx: hex::encode(tx.to_bytes()),
            encoding: Encoding::Hex,
        };
        let response: SimulateResponse = self.post_json("/v1/simulate", &request).await?;
        Ok(response.receipt)
    }

    /// Wait for the committed receipt of `hash` by polling [`Client::tx_status`] every
    /// [`ClientConfig::receipt_poll_interval`]; [`ClientError::Timeout`] at `deadline`.
    /// Failed polls are retried until the deadline. Prefer [`crate::Subscription`], which
    /// multiplexes many waits over one WebSocket.
    pub async fn wait_receipt_polling(
        &self,
        hash: Hash,
        deadline: Instant,
    ) -> Result<CommittedReceipt, ClientError> {
        let started = Instant::now();
        let deadline_tokio = tokio::time::Instant::from_std(deadline);
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                break;
            }
            let poll = tokio::time::timeout(remaining, self.tx_status(hash)).await;
            if let Ok(Ok(status)) = poll {
                if let Some(committed) = CommittedReceipt::from_status(&status) {
                    return Ok(committed);
                }
            }
            let next = tokio::time::Instant::now() + self.config.receipt_poll_interval;
            tokio::time::sleep_until(next.min(deadline_tokio)).await;
        }
        Err(ClientError::timeout(
            format!("receipt of {hash}"),
            started.elapsed(),
        ))
    }

    /// Simulate each of `txs`, at most `concurrency` at once; results in order.
    pub(crate) async fn simulate_each(
        &self,
        txs: Vec<SignedTx>,
        concurrency: usize,
    ) -> Vec<Result<ReceiptJson, ClientError>> {
        futures::stream::iter(txs)
            .map(|tx| async move { self.simulate(&tx).await })
            .buffered(concurrency.max(1))
            .collect()
            .await
    }

    async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.base);
        let response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|error| self.transport_error(&error))?;
        self.read(response).await
    }

    async fn post_json<B: serde::Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.base);
        let response = self
            .http
            .post(url)
            .json(body)
            .send()
            .await
            .map_err(|error| self.transport_error(&error))?;
        self.read(response).await
    }

    async fn read<T: DeserializeOwned>(
        &self,
        response: reqwest::Response,
    ) -> Result<T, ClientError> {
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|error| self.transport_error(&error))?;
        if status.is_success() {
            return serde_json::from_slice(&bytes)
                .map_err(|error| self.decode_error(error.to_string()));
        }
        let (code, message) = match serde_json::from_slice::<ErrorResponse>(&bytes) {
            Ok(body) => (body.error.code, body.error.message),
            Err(_) => {
                let quoted = bytes.get(..ERROR_BODY_QUOTE_MAX).unwrap_or(&bytes);
                (
                    format!("http_{}", status.as_u16()),
                    String::from_utf8_lossy(quoted).into_owned(),
                )
            }
        };
        let endpoint = self.base.to_string();
        let status = status.as_u16();
        if status == 503 || status == 429 {
            Err(ClientError::Overloaded {
                endpoint,
                status,
                code,
                message,
            })
        } else {
            Err(ClientError::Http {
                endpoint,
                status,
                code,
                message,
            })
        }
    }

    fn transport_error(&self, error: &reqwest::Error) -> ClientError {
        if error.is_timeout() {
            return ClientError::timeout(self.base.to_string(), self.config.timeout);
        }
        // reqwest's own message is terse ("error sending request"); the causes say why.
        let mut message = error.to_string();
        let mut source = std::error::Error::source(error);
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        ClientError::Transport {
            endpoint: self.base.to_string(),
            message,
        }
    }

    fn decode_error(&self, message: String) -> ClientError {
        ClientError::Decode {
            endpoint: self.base.to_string(),
            message,
        }
    }
}

impl ChainClient for Client {
    async fn submit(&self, txs: &[SignedTx]) -> Result<Vec<Admission>, ClientError> {
        Client::submit(self, txs).await
    }

    async fn tx_status(&self, hash: Hash) -> Result<TxStatusJson, ClientError> {
        Client::tx_status(self, hash).await
    }

    async fn account(&self, address: PublicKey) -> Result<AccountJson, ClientError> {
        Client::account(self, address).await
    }

    async fn status(&self) -> Result<NodeStatus, ClientError> {
        Client::status(self).await
    }

    async fn simulate(&self, tx: &SignedTx) -> Result<ReceiptJson, ClientError> {
        Client::simulate(self, tx).await
    }

    async fn nonce_and_status(
        &self,
        address: PublicKey,
        hash: Hash,
    ) -> Result<(u64, TxStatusJson), ClientError> {
        let nonce = Client::account(self, address).await?.nonce;
        let status = Client::tx_status(self, hash).await?;
        Ok((nonce, status))
    }

    async fn dry_run<F>(
        &self,
        address: PublicKey,
        build: F,
        concurrency: usize,
    ) -> Result<Vec<Result<ReceiptJson, ClientError>>, ClientError>
    where
        F: FnOnce(u64) -> Vec<SignedTx> + Send,
    {
        let nonce = Client::account(self, address).await?.nonce;
        Ok(self.simulate_each(build(nonce), concurrency).await)
    }

    async fn wait_receipt(
        &self,
        hash: Hash,
        deadline: Instant,
    ) -> Result<CommittedReceipt, ClientError> {
        self.wait_receipt_polling(hash, deadline).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_checked() {
        assert_eq!(
            normalize_base_url("http://127.0.0.1:1/").unwrap(),
            "http://127.0.0.1:1"
        );
        assert!(normalize_base_url("https://x").is_err());
        assert!(normalize_base_url("http://").is_err());
        assert!(normalize_base_url("127.0.0.1:1").is_err());
    }

    #[tokio::test]
    async fn refused_connection_is_a_transport_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let client = Client::new(&format!("http://127.0.0.1:{port}")).unwrap();
        let error = client.status().await.unwrap_err();
        assert!(matches!(error, ClientError::Transport { .. }), "{error:?}");
        assert!(error.is_transient());
    }
}
