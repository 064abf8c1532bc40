//! A scriptable in-memory node behind [`NodeApi`], and a test server around it.

use basalt_app::{App, BookView};
use basalt_rpc::{
    AccountRecord, BlockAt, BlockEvent, BlockRecord, CommitTime, NodeApi, NodeStatus, Rejection,
    RpcConfig, RpcHandle, SyncStatus, TxStatus,
};
use basalt_types::block::txs_root;
use basalt_types::{
    AccountGenesis, BatchItem, BatchMode, Block, BlockHeader, BoundedVec, CommitCertificate,
    CommitSignature, Genesis, Hash, ItemResult, Keypair, MarketGenesis, Payload, PublicKey,
    Receipt, ReceiptStatus, Side, Signature, SignedTx, TxError, ValidatorInfo,
};
use prometheus_client::registry::Registry;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, Notify};

pub const CHAIN_ID: &str = "basalt-test";
pub const MARKET: u32 = 1;
pub const GENESIS_TIME_MS: u64 = 1_700_000_000_000;
/// `book` of this market panics, to check that a panicking node call fails one request only.
pub const PANIC_MARKET: u32 = 666;
/// `submit` of a transaction with this nonce panics.
pub const PANIC_NONCE: u64 = 666;
pub const METRICS_TEXT: &str = "# TYPE mock_events counter\nmock_events_total 7\n# EOF\n";
/// How long a test waits for a condition before failing.
pub const DEADLINE: Duration = Duration::from_secs(10);

pub fn alice() -> Keypair {
    Keypair::from_label("alice")
}

pub fn bob() -> Keypair {
    Keypair::from_label("bob")
}

pub fn transfer(nonce: u64, amount: u64) -> SignedTx {
    SignedTx::sign(
        &alice(),
        CHAIN_ID,
        nonce,
        Payload::Single(BatchItem::Transfer {
            to: bob().public(),
            asset: 0,
            amount,
        }),
    )
}

pub fn success_receipt(tx: &SignedTx) -> Receipt {
    Receipt {
        tx_hash: tx.hash(),
        status: ReceiptStatus::Success,
        items: BoundedVec::new(vec![ItemResult::Applied { order_id: None }]).unwrap(),
    }
}

/// A one-shot latch a blocking call can wait on.
#[derive(Default)]
pub struct Latch {
    open: Mutex<bool>,
    changed: Condvar,
}

impl Latch {
    pub fn wait(&self) {
        let mut open = self.open.lock().unwrap();
        while !*open {
            open = self.changed.wait(open).unwrap();
        }
    }

    pub fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.changed.notify_all();
    }
}

pub struct Inner {
    pub app: Mutex<App>,
    pub blocks: Mutex<BTreeMap<u64, BlockRecord>>,
    pub statuses: Mutex<HashMap<Hash, TxStatus>>,
    pub events: broadcast::Sender<Arc<BlockEvent>>,
    /// When set, `submit` waits for `notify_waiters` before answering.
    pub submit_gate: Option<Arc<Notify>>,
    pub submits_waiting: AtomicUsize,
    /// When set, `tx_status` of this hash blocks until the latch opens.
    pub status_gate: Mutex<Option<(Hash, Arc<Latch>)>>,
    pub status_gate_entered: AtomicUsize,
    /// Names of the threads node calls ran on.
    pub threads: Mutex<Vec<String>>,
    /// When set, `admit` refuses every request.
    pub congested: AtomicBool,
    /// How long `admit` makes each request wait, ms.
    pub admit_wait_ms: AtomicU64,
}

impl Inner {
    fn record_thread(&self) {
        let name = std::thread::current()
            .name()
            .unwrap_or("<unnamed>")
            .to_owned();
        self.threads.lock().unwrap().push(name);
    }
}

#[derive(Clone)]
pub struct MockNode {
    pub inner: Arc<Inner>,
}

fn genesis() -> Genesis {
    Genesis {
        chain_id: CHAIN_ID.to_owned(),
        genesis_time_ms: GENESIS_TIME_MS,
        validators: vec![ValidatorInfo {
            public_key: Keypair::from_label("validator-0").public(),
            power: 1,
        }],
        assets: vec![0, 1],
        accounts: vec![AccountGenesis {
            address: alice().public(),
            balances: vec![(0, 1_000_000), (1, 1_000_000)],
        }],
        markets: vec![MarketGenesis {
            id: MARKET,
            base: 0,
            quote: 1,
        }],
        task_generators: vec![],
    }
}

impl MockNode {
    pub fn new() -> MockNode {
        Self::build(None, 64)
    }

    pub fn with_submit_gate(gate: Arc<Notify>) -> MockNode {
        Self::build(Some(gate), 64)
    }

    pub fn with_event_capacity(capacity: usize) -> MockNode {
        Self::build(None, capacity)
    }

    fn build(submit_gate: Option<Arc<Notify>>, capacity: usize) -> MockNode {
        let mut app = App::from_genesis(&genesis()).unwrap();
        // Block 1 of the app: alice rests a bid on the market, so the book is not empty.
        let bid = SignedTx::sign(
            &alice(),
            CHAIN_ID,
            0,
            Payload::Single(BatchItem::PlaceOrder {
                market: MARKET,
                side: Side::Buy,
                price_ticks: 10,
                quantity: 3,
            }),
        );
        let outcome = app.execute_block(1, &[bid]).unwrap();
        assert!(outcome.receipts[0].is_success());
        let (events, _) = broadcast::channel(capacity);
        let node = MockNode {
            inner: Arc::new(Inner {
                app: Mutex::new(app),
                blocks: Mutex::new(BTreeMap::new()),
                statuses: Mutex::new(HashMap::new()),
                events,
                submit_gate,
                submits_waiting: AtomicUsize::new(0),
                status_gate: Mutex::new(None),
                status_gate_entered: AtomicUsize::new(0),
                threads: Mutex::new(Vec::new()),
                congested: AtomicBool::new(false),
                admit_wait_ms: AtomicU64::new(0),
            }),
        };
        node.add_block(1, vec![transfer(1, 5), batch_tx(2)], true);
        node
    }

    /// Store a block at `height` with `txs`, their statuses as committed, and return the
    /// event (not sent).
    pub fn add_block(&self, height: u64, txs: Vec<SignedTx>, with_certificate: bool) -> BlockEvent {
        let last_commit = (height > 1).then(|| certificate(height - 1, Hash([height as u8; 32])));
        let header = BlockHeader {
            height,
            round: 0,
            proposer: 0,
            parent_hash: Hash([height as u8 - 1; 32]),
            state_root: Hash([0xaa; 32]),
            txs_root: txs_root(&txs),
            time_ms: GENESIS_TIME_MS + height * 100,
            last_commit_hash: last_commit
                .as_ref()
                .map_or(Hash::ZERO, CommitCertificate::hash),
        };
        let block = Block {
            header,
            txs: BoundedVec::new(txs.clone()).unwrap(),
            last_commit,
        };
        let id = block.id();
        let receipts: Vec<Receipt> = txs.iter().map(success_receipt).collect();
        {
            let mut statuses = self.inner.statuses.lock().unwrap();
            for (index, (tx, receipt)) in txs.iter().zip(&receipts).enumerate() {
                statuses.insert(
                    tx.hash(),
                    TxStatus::Committed {
                        height,
                        index: index as u32,
                        receipt: receipt.clone(),
                    },
                );
            }
        }
        let certificate = with_certificate.then(|| certificate(height, id));
        self.inner
            .blocks
            .lock()
            .unwrap()
            .insert(height, BlockRecord { block, certificate });
        BlockEvent {
            height,
            block_id: id,
            time_ms: GENESIS_TIME_MS + height * 100,
            txs: txs.iter().map(SignedTx::hash).collect(),
            receipts,
        }
    }

    pub fn set_status(&self, hash: Hash, status: TxStatus) {
        self.inner.statuses.lock().unwrap().insert(hash, status);
    }

    pub fn publish(&self, event: BlockEvent) {
        self.inner.events.send(Arc::new(event)).unwrap();
    }

    pub fn gate_status(&self, hash: Hash) -> Arc<Latch> {
        let latch = Arc::new(Latch::default());
        *self.inner.status_gate.lock().unwrap() = Some((hash, latch.clone()));
        latch
    }
}

pub fn batch_tx(nonce: u64) -> SignedTx {
    SignedTx::sign(
        &alice(),
        CHAIN_ID,
        nonce,
        Payload::Batch {
            mode: BatchMode::Atomic,
            items: BoundedVec::new(vec![
                BatchItem::PlaceOrder {
                    market: MARKET,
                    side: Side::Sell,
                    price_ticks: 12,
                    quantity: 2,
                },
                BatchItem::CancelOrder {
                    market: MARKET,
                    order_id: 4,
                },
            ])
            .unwrap(),
        },
    )
}

pub fn certificate(height: u64, block_id: Hash) -> CommitCertificate {
    CommitCertificate {
        height,
        round: 0,
        block_id,
        signatures: BoundedVec::new(vec![CommitSignature {
            validator: 0,
            signature: Signature([7; 64]),
        }])
        .unwrap(),
    }
}

impl NodeApi for MockNode {
    fn admit(&self, txs: usize) -> Result<Duration, String> {
        if self.inner.congested.load(Ordering::SeqCst) {
            return Err(format!("mock: blocks are slow, {txs} refused"));
        }
        Ok(Duration::from_millis(
            self.inner.admit_wait_ms.load(Ordering::SeqCst),
        ))
    }

    fn submit(
        &self,
        txs: Vec<SignedTx>,
    ) -> impl Future<Output = Vec<Result<Hash, Rejection>>> + Send {
        let inner = self.inner.clone();
        async move {
            inner.record_thread();
            if txs.iter().any(|tx| tx.body.nonce == PANIC_NONCE) {
                panic!("mock node panics in submit");
            }
            if let Some(gate) = &inner.submit_gate {
                let notified = gate.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                inner.submits_waiting.fetch_add(1, Ordering::SeqCst);
                notified.await;
            }
            let mut statuses = inner.statuses.lock().unwrap();
            txs.iter()
                .map(|tx| {
                    if tx.body.chain_id.as_str() != CHAIN_ID {
                        return Err(Rejection::new("wrong_chain_id", "wrong chain id"));
                    }
                    if !tx.verify_signature() {
                        return Err(Rejection::new("bad_signature", "bad signature"));
                    }
                    let hash = tx.hash();
                    if statuses.contains_key(&hash) {
                        return Err(Rejection::new("duplicate", "already known"));
                    }
                    statuses.insert(hash, TxStatus::Pending);
                    Ok(hash)
                })
                .collect()
        }
    }

    fn tx_status(&self, hash: Hash) -> TxStatus {
        let gate = self.inner.status_gate.lock().unwrap().clone();
        if let Some((gated, latch)) = gate {
            if gated == hash {
                self.inner
                    .status_gate_entered
                    .fetch_add(1, Ordering::SeqCst);
                latch.wait();
            }
        }
        self.inner
            .statuses
            .lock()
            .unwrap()
            .get(&hash)
            .cloned()
            .unwrap_or(TxStatus::Unknown)
    }

    fn block(&self, at: BlockAt) -> Option<BlockRecord> {
        let blocks = self.inner.blocks.lock().unwrap();
        match at {
            BlockAt::Latest => blocks.values().next_back().cloned(),
            BlockAt::Height(height) => blocks.get(&height).cloned(),
        }
    }

    fn account(&self, address: PublicKey) -> Option<AccountRecord> {
        let app = self.inner.app.lock().unwrap();
        let (account, proof) = app.account_with_proof(&address).unwrap();
        Some(AccountRecord {
            exists: account.is_some(),
            account: account.unwrap_or_default(),
            proof,
            state_root: app.state_root(),
            height: app.height(),
        })
    }

    fn book(&self, market: u32) -> Option<BookView> {
        if market == PANIC_MARKET {
            panic!("mock node panics in book");
        }
        self.inner.app.lock().unwrap().book(market)
    }

    fn status(&self) -> NodeStatus {
        self.inner.record_thread();
        NodeStatus {
            chain_id: CHAIN_ID.to_owned(),
            node_id: "mock-0".to_owned(),
            height: 1,
            round: 0,
            sync: SyncStatus::Synced,
            peers: 3,
            validators: genesis().validators,
            validator_index: Some(0),
            latest_block_id: Hash([1; 32]),
            latest_state_root: Hash([2; 32]),
            latest_time_ms: GENESIS_TIME_MS + 100,
        }
    }

    fn simulate(&self, tx: SignedTx) -> Result<Receipt, Rejection> {
        if !tx.verify_signature() {
            return Err(Rejection::new("bad_signature", "bad signature"));
        }
        Ok(self.inner.app.lock().unwrap().simulate(&tx))
    }

    fn subscribe(&self) -> broadcast::Receiver<Arc<BlockEvent>> {
        self.inner.events.subscribe()
    }

    fn metrics_text(&self) -> String {
        METRICS_TEXT.to_owned()
    }

    /// Every stored block, "made durable" at its block time.
    fn commit_times(&self, from: u64, limit: usize) -> Vec<CommitTime> {
        let blocks = self.inner.blocks.lock().unwrap();
        blocks
            .range(from..)
            .take(limit)
            .map(|(&height, record)| CommitTime {
                height,
                at_unix_us: record.block.header.time_ms * 1000,
            })
            .collect()
    }
}

/// A receipt for a failing transaction, to check the JSON of errors.
pub fn failed_receipt(tx: &SignedTx) -> Receipt {
    Receipt {
        tx_hash: tx.hash(),
        status: ReceiptStatus::Failed(TxError::BatchFailed),
        items: BoundedVec::new(vec![
            ItemResult::Applied { order_id: Some(9) },
            ItemResult::Failed(TxError::InsufficientBalance {
                asset: 1,
                needed: 10,
                available: 3,
            }),
            ItemResult::RolledBack,
        ])
        .unwrap(),
    }
}

/// A running server around a mock.
pub struct TestServer {
    pub handle: Option<RpcHandle>,
    pub base: String,
    pub registry: Registry,
    pub node: MockNode,
    pub client: reqwest::Client,
}

impl TestServer {
    pub fn start(node: MockNode, configure: impl FnOnce(&mut RpcConfig)) -> TestServer {
        let mut config = RpcConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..RpcConfig::default()
        };
        configure(&mut config);
        // As the node does: one registry, prefixed `basalt`.
        let mut registry = Registry::with_prefix("basalt");
        let handle = basalt_rpc::spawn(config, node.clone(), &mut registry).unwrap();
        let base = format!("http://{}", handle.local_addr());
        TestServer {
            handle: Some(handle),
            base,
            registry,
            node,
            client: client(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn ws_url(&self) -> String {
        format!("{}/v1/subscribe", self.base.replace("http://", "ws://"))
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let response = self.client.get(self.url(path)).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let response = self
            .client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    pub async fn post_raw(&self, path: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
        let response = self
            .client
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    /// The registry's text exposition (where the RPC's own metrics live).
    pub fn metrics(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).unwrap();
        text
    }

    /// Shut down and join the server threads.
    pub async fn stop(mut self) {
        if let Some(handle) = self.handle.take() {
            tokio::task::spawn_blocking(move || handle.shutdown())
                .await
                .unwrap();
        }
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// The value of the series `name` (with labels, exactly as exposed), if present.
pub fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(series)?;
        rest.strip_prefix(' ')?.trim().parse().ok()
    })
}

/// Wait until `condition` holds, polling, or fail after [`DEADLINE`].
pub async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(started.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<no error code>")
}
