//! The node's Prometheus metrics (prefix `basalt_`), named after CometBFT's where the
//! concept is the same so that existing dashboards translate.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// One label pair list, e.g. `[("queue", "consensus")]`.
pub type Labels = Vec<(&'static str, String)>;

fn latency_histogram() -> Histogram {
    // 0.25 ms .. ~10 s in steps of 25 %: fine enough that the load lab's p50/p99 estimates
    // (interpolated within a bucket) resolve a 5 % change.
    Histogram::new(exponential_buckets(0.00025, 1.25, 48))
}

/// Every metric of the node (the RPC registers its own into the same registry).
#[derive(Clone)]
pub struct Metrics {
    /// Latest committed height.
    pub height: Gauge,
    /// Current round of the height being decided.
    pub round: Gauge,
    /// Time between consecutive commits.
    pub block_interval: Histogram,
    /// Time spent in each step.
    pub step_duration: Family<Labels, Histogram, fn() -> Histogram>,
    /// From entering prevote to holding 2f+1 precommits.
    pub precommit_latency: Histogram,
    /// Heights decided in a round above 0.
    pub round_escalations: Counter,
    /// Committed transactions.
    pub committed_txs: Counter,
    /// Equivocation evidence seen.
    pub evidence: Counter,
    /// Consensus inputs not used, by reason.
    pub consensus_dropped: Family<Labels, Counter>,
    /// Blocks whose pre-state root differs from ours.
    pub state_root_mismatches: Counter,
    /// How late each consensus timer fired.
    pub timer_lag: Histogram,
    /// Time to record a signature durably before it is sent (the WAL before it included).
    pub sign_record_duration: Histogram,
    /// Votes/proposals this node's signing guard refused to sign.
    pub sign_refusals: Counter,
    /// Pending transactions.
    pub mempool_size: Gauge,
    /// Pending transaction bytes.
    pub mempool_bytes: Gauge,
    /// Mempool refusals by reason.
    pub mempool_rejections: Family<Labels, Counter>,
    /// Depth of each named queue.
    pub queue_depth: Family<Labels, Gauge>,
    /// Items dropped because a named queue was full.
    pub queue_dropped: Family<Labels, Counter>,
    /// Connected peers.
    pub peers: Gauge,
    /// 0 idle, 1 syncing, 2 synced.
    pub sync_status: Gauge,
    /// Blocks applied through sync.
    pub synced_blocks: Counter,
    /// Time to execute a block.
    pub execute_duration: Histogram,
    /// Time to persist a block.
    pub persist_duration: Histogram,
    /// Blocks made durable per storage transaction.
    pub persist_batch: Histogram,
    /// Admission into this node's mempool → executed in a committed block.
    pub mempool_wait: Histogram,
    /// Signatures verified by the pool, by kind.
    pub signatures_verified: Family<Labels, Counter>,
    /// Transaction batches published, by whether receivers forward them (`relay`).
    pub tx_batches_published: Family<Labels, Counter>,
    /// Gossip messages that failed decoding or checks, by topic.
    pub gossip_invalid: Family<Labels, Counter>,
    /// Consensus messages put into the pending buffer, by kind and reason.
    pub pending_buffered: Family<Labels, Counter>,
    /// Pending-buffer entries evicted (oldest first) by a push into a full buffer, by kind.
    pub pending_evicted: Family<Labels, Counter>,
    /// Pending-buffer replays, by kind and outcome (accepted, rebuffered, dropped).
    pub pending_replayed: Family<Labels, Counter>,
    /// Messages in the pending buffer.
    pub pending_size: Gauge,
    /// Most messages the pending buffer ever held.
    pub pending_size_max: Gauge,
    /// Block fetches in flight.
    pub fetch_in_flight: Gauge,
    /// Most block fetches ever in flight at once.
    pub fetch_in_flight_max: Gauge,
    /// Block fetches started, by kind (range, hash).
    pub fetch_started: Family<Labels, Counter>,
    /// Block fetches refused at once, by kind and reason (duplicate, inflight_cap).
    pub fetch_refused: Family<Labels, Counter>,
    /// Block fetches ended, by kind and outcome (answered, failed, timed_out, cancelled).
    pub fetch_ended: Family<Labels, Counter>,
    /// Gossip dropped before verification, by reason and sync state.
    pub gossip_dropped: Family<Labels, Counter>,
    /// Driver turns in which a timer fired more than one propose timeout late.
    pub driver_stalls: Counter,
    /// Rounds whose proposal was late enough that this node re-sent the previous height's
    /// commit precommits.
    pub proposer_nudges: Counter,
    /// Network inputs handled per driver turn.
    pub driver_turn_inputs: Histogram,
}

impl Metrics {
    /// Create the metrics and register them in `registry` (whose prefix should be `basalt`).
    pub fn register(registry: &mut Registry) -> Metrics {
        let metrics = Metrics {
            height: Gauge::default(),
            round: Gauge::default(),
            block_interval: latency_histogram(),
            step_duration: Family::new_with_constructor(latency_histogram),
            precommit_latency: latency_histogram(),
            round_escalations: Counter::default(),
            committed_txs: Counter::default(),
            evidence: Counter::default(),
            consensus_dropped: Family::default(),
            state_root_mismatches: Counter::default(),
            timer_lag: latency_histogram(),
            sign_record_duration: latency_histogram(),
            sign_refusals: Counter::default(),
            mempool_size: Gauge::default(),
            mempool_bytes: Gauge::default(),
            mempool_rejections: Family::default(),
            queue_depth: Family::default(),
            queue_dropped: Family::default(),
            peers: Gauge::default(),
            sync_status: Gauge::default(),
            synced_blocks: Counter::default(),
            execute_duration: latency_histogram(),
            persist_duration: latency_histogram(),
            persist_batch: Histogram::new(exponential_buckets(1.0, 2.0, 8)),
            mempool_wait: latency_histogram(),
            signatures_verified: Family::default(),
            tx_batches_published: Family::default(),
            gossip_invalid: Family::default(),
            pending_buffered: Family::default(),
            pending_evicted: Family::default(),
            pending_replayed: Family::default(),
            pending_size: Gauge::default(),
            pending_size_max: Gauge::default(),
            fetch_in_flight: Gauge::default(),
            fetch_in_flight_max: Gauge::default(),
            fetch_started: Family::default(),
            fetch_refused: Family::default(),
            fetch_ended: Family::default(),
            gossip_dropped: Family::default(),
            driver_stalls: Counter::default(),
            proposer_nudges: Counter::default(),
            driver_turn_inputs: Histogram::new(exponential_buckets(1.0, 2.0, 14)),
        };
        let m = metrics.clone();
        registry.register("consensus_height", "Latest committed height", m.height);
        registry.register(
            "consensus_rounds",
            "Round of the height in progress",
            m.round,
        );
        registry.register(
            "consensus_block_interval_seconds",
            "Time between consecutive commits",
            m.block_interval,
        );
        registry.register(
            "consensus_step_duration_seconds",
            "Time spent in each consensus step",
            m.step_duration,
        );
        registry.register(
            "consensus_precommit_latency_seconds",
            "From entering prevote to holding 2f+1 precommits",
            m.precommit_latency,
        );
        registry.register(
            "consensus_round_escalations",
            "Heights decided in a round above 0",
            m.round_escalations,
        );
        registry.register(
            "consensus_committed_txs",
            "Transactions committed",
            m.committed_txs,
        );
        registry.register(
            "consensus_evidence",
            "Equivocation evidence seen",
            m.evidence,
        );
        registry.register(
            "consensus_dropped_inputs",
            "Consensus inputs not used, by reason",
            m.consensus_dropped,
        );
        registry.register(
            "consensus_state_root_mismatches",
            "Blocks whose pre-state root differs from this node's",
            m.state_root_mismatches,
        );
        registry.register(
            "consensus_timer_lag_seconds",
            "How late consensus timers fire",
            m.timer_lag,
        );
        registry.register(
            "consensus_sign_record_duration_seconds",
            "Time to record a signature durably before sending it",
            m.sign_record_duration,
        );
        registry.register(
            "consensus_sign_refusals",
            "Messages the double-sign guard refused to sign",
            m.sign_refusals,
        );
        registry.register("mempool_size", "Pending transactions", m.mempool_size);
        registry.register(
            "mempool_size_bytes",
            "Pending transaction bytes",
            m.mempool_bytes,
        );
        registry.register(
            "mempool_rejections",
            "Transactions refused by the mempool, by reason",
            m.mempool_rejections,
        );
        registry.register(
            "queue_depth",
            "Items waiting in each named queue",
            m.queue_depth,
        );
        registry.register(
            "queue_dropped",
            "Items dropped because a named queue was full",
            m.queue_dropped,
        );
        registry.register("p2p_peers", "Connected peers", m.peers);
        registry.register(
            "sync_status",
            "Sync status: 0 idle, 1 syncing, 2 synced",
            m.sync_status,
        );
        registry.register(
            "sync_blocks",
            "Blocks applied through sync",
            m.synced_blocks,
        );
        registry.register(
            "chain_execute_duration_seconds",
            "Time to execute a block",
            m.execute_duration,
        );
        registry.register(
            "mempool_wait_seconds",
            "Admission into this node's mempool to execution in a committed block",
            m.mempool_wait,
        );
        registry.register(
            "chain_persist_duration_seconds",
            "Time to make a batch of blocks durable (one storage transaction)",
            m.persist_duration,
        );
        registry.register(
            "chain_persist_batch_blocks",
            "Blocks made durable per storage transaction (more than one when blocks queued \
             up behind an fsync)",
            m.persist_batch,
        );
        registry.register(
            "signatures_verified",
            "Signatures verified by the pool, by kind",
            m.signatures_verified,
        );
        registry.register(
            "tx_batches_published",
            "Transaction batches published, by relay: false when every other validator was \
             reached directly and receivers do not forward them",
            m.tx_batches_published,
        );
        registry.register(
            "gossip_invalid",
            "Gossip messages that failed decoding or checks, by topic",
            m.gossip_invalid,
        );
        registry.register(
            "pending_buffered",
            "Consensus messages put into the pending buffer, by kind and reason",
            m.pending_buffered,
        );
        registry.register(
            "pending_evicted",
            "Pending-buffer entries evicted by a push into the full buffer, by kind",
            m.pending_evicted,
        );
        registry.register(
            "pending_replayed",
            "Pending-buffer replays by kind and outcome",
            m.pending_replayed,
        );
        registry.register(
            "pending_size",
            "Messages in the pending buffer",
            m.pending_size,
        );
        registry.register(
            "fetch_in_flight",
            "Block fetches in flight",
            m.fetch_in_flight,
        );
        registry.register(
            "fetch_in_flight_max",
            "Most block fetches ever in flight at once",
            m.fetch_in_flight_max,
        );
        registry.register(
            "pending_size_max",
            "Most messages the pending buffer ever held",
            m.pending_size_max,
        );
        registry.register(
            "fetch_started",
            "Block fetches started, by kind",
            m.fetch_started,
        );
        registry.register(
            "fetch_refused",
            "Block fetches refused at once, by kind and reason",
            m.fetch_refused,
        );
        registry.register(
            "fetch_ended",
            "Block fetches ended, by kind and outcome",
            m.fetch_ended,
        );
        registry.register(
            "gossip_dropped",
            "Gossip dropped before verification, by reason and sync state",
            m.gossip_dropped,
        );
        registry.register(
            "consensus_driver_stalls",
            "Driver turns in which a timer fired more than one propose timeout late",
            m.driver_stalls,
        );
        registry.register(
            "consensus_proposer_nudges",
            "Rounds whose proposal was late enough that this node re-sent the previous \
             height's commit precommits",
            m.proposer_nudges,
        );
        registry.register(
            "consensus_driver_turn_inputs",
            "Network inputs handled per driver turn",
            m.driver_turn_inputs,
        );
        metrics
    }

    /// Label helper.
    pub fn label(key: &'static str, value: &str) -> Labels {
        vec![(key, value.to_owned())]
    }

    /// Record a drop from the named queue.
    pub fn dropped(&self, queue: &str) {
        self.queue_dropped
            .get_or_create(&Self::label("queue", queue))
            .inc();
    }

    /// Labels from pairs.
    pub fn labels(pairs: &[(&'static str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect()
    }

    /// Set `gauge` to `value` and raise `max` to it if higher.
    pub fn set_with_max(gauge: &Gauge, max: &Gauge, value: usize) {
        let value = i64::try_from(value).unwrap_or(i64::MAX);
        gauge.set(value);
        if value > max.get() {
            max.set(value);
        }
    }

    /// Set the depth of the named queue.
    pub fn depth(&self, queue: &str, depth: usize) {
        self.queue_depth
            .get_or_create(&Self::label("queue", queue))
            .set(i64::try_from(depth).unwrap_or(i64::MAX));
    }
}

/// Exports the p2p service's counters (plain atomics in `basalt_p2p::P2pStats`) at scrape
/// time, so the p2p crate needs no metrics dependency.
#[derive(Debug)]
pub struct P2pCollector {
    /// The p2p handle whose stats are read.
    pub handle: basalt_p2p::NetworkHandle,
}

impl prometheus_client::collector::Collector for P2pCollector {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::counter::ConstCounter;
        use std::sync::atomic::Ordering::Relaxed;
        let stats = self.handle.stats();
        let counters: [(&str, &str, &std::sync::atomic::AtomicU64); 18] = [
            (
                "p2p_gossip_slow_peer_dropped",
                "Gossip messages not queued for a peer whose send queue was full",
                &stats.gossip_slow_peer_dropped,
            ),
            (
                "p2p_slow_peer_disconnects",
                "Peers disconnected (static ones re-dialed) after their gossip send queue overflowed for 5 s",
                &stats.slow_peer_disconnects,
            ),
            (
                "p2p_consensus_publish_failed",
                "Own consensus messages gossipsub refused to publish (send queues full, no peer)",
                &stats.consensus.publish_failed,
            ),
            (
                "p2p_consensus_rate_limited",
                "Consensus gossip dropped: its peer exceeded its rate",
                &stats.consensus.rate_limited,
            ),
            (
                "p2p_consensus_received",
                "Consensus gossip received",
                &stats.consensus.received,
            ),
            (
                "p2p_consensus_dropped",
                "Consensus gossip dropped: event queue full",
                &stats.consensus.dropped_queue_full,
            ),
            (
                "p2p_consensus_published",
                "Consensus gossip published",
                &stats.consensus.published,
            ),
            (
                "p2p_txs_received",
                "Transaction batches received",
                &stats.txs.received,
            ),
            (
                "p2p_txs_dropped",
                "Transaction batches dropped: event queue full",
                &stats.txs.dropped_queue_full,
            ),
            (
                "p2p_txs_published",
                "Transaction batches published",
                &stats.txs.published,
            ),
            (
                "p2p_gossip_rejected",
                "Gossip rejected as invalid",
                &stats.gossip_rejected,
            ),
            (
                "p2p_gossip_ignored",
                "Gossip ignored (not forwarded)",
                &stats.gossip_ignored,
            ),
            (
                "p2p_invalid_messages",
                "Invalid messages from peers",
                &stats.invalid_messages,
            ),
            (
                "p2p_peers_banned",
                "Peers disconnected and banned for invalid messages",
                &stats.peers_banned,
            ),
            (
                "p2p_requests_inbound",
                "Sync requests received",
                &stats.requests_inbound,
            ),
            (
                "p2p_requests_inbound_refused",
                "Sync requests refused (queue full)",
                &stats.requests_inbound_refused,
            ),
            (
                "p2p_requests_outbound",
                "Sync requests sent",
                &stats.requests_outbound,
            ),
            (
                "p2p_request_failures",
                "Sync requests that failed",
                &stats.request_failures,
            ),
        ];
        for (name, help, value) in counters {
            let counter = ConstCounter::new(value.load(Relaxed));
            let metric = encoder.encode_descriptor(name, help, None, counter.metric_type())?;
            counter.encode(metric)?;
        }
        Ok(())
    }
}

/// The process's resident memory, read from `/proc/self/status` at scrape time (Linux; on
/// other systems the metric is absent).
#[derive(Debug)]
pub struct ProcessCollector;

/// Resident set size of this process in bytes, if the system tells.
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

impl prometheus_client::collector::Collector for ProcessCollector {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::gauge::ConstGauge;
        if let Some(bytes) = resident_bytes() {
            let gauge = ConstGauge::new(i64::try_from(bytes).unwrap_or(i64::MAX));
            let metric = encoder.encode_descriptor(
                "process_resident_memory_bytes",
                "Resident memory of the node process",
                None,
                gauge.metric_type(),
            )?;
            gauge.encode(metric)?;
        }
        Ok(())
    }
}
