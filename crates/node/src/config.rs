//! Node configuration: `config/config.toml` (every field documented in the written file),
//! with environment overrides `BASALT__SECTION__KEY=value`.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Consensus timing.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct ConsensusConfig {
    /// Wait for a proposal in round 0, ms.
    pub timeout_propose_ms: u64,
    /// Added to the propose timeout per round, ms.
    pub timeout_propose_delta_ms: u64,
    /// Wait after 2f+1 mixed prevotes, ms.
    pub timeout_prevote_ms: u64,
    /// Added per round, ms.
    pub timeout_prevote_delta_ms: u64,
    /// Wait after 2f+1 mixed precommits, ms.
    pub timeout_precommit_ms: u64,
    /// Added per round, ms.
    pub timeout_precommit_delta_ms: u64,
    /// Wait after a commit before the next height, ms (0 = at once).
    pub commit_wait_ms: u64,
    /// Re-send own votes of the current height this often, ms (repairs lost gossip).
    pub rebroadcast_interval_ms: u64,
}

impl Default for ConsensusConfig {
    fn default() -> Self {
        ConsensusConfig {
            timeout_propose_ms: 1000,
            timeout_propose_delta_ms: 500,
            timeout_prevote_ms: 300,
            timeout_prevote_delta_ms: 200,
            timeout_precommit_ms: 300,
            timeout_precommit_delta_ms: 200,
            commit_wait_ms: 0,
            rebroadcast_interval_ms: 3000,
        }
    }
}

/// Peer-to-peer networking.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct P2pSection {
    /// libp2p listen address.
    pub listen_addr: String,
    /// Static peers (multiaddrs ending in /p2p/<peer id>).
    pub persistent_peers: Vec<String>,
}

impl Default for P2pSection {
    fn default() -> Self {
        P2pSection {
            listen_addr: "/ip4/127.0.0.1/tcp/26656".into(),
            persistent_peers: Vec::new(),
        }
    }
}

/// RPC server.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct RpcSection {
    /// HTTP listen address.
    pub listen_addr: String,
    /// Threads of the RPC's own runtime.
    pub worker_threads: usize,
    /// Requests served at once; more are shed with 503.
    pub max_concurrent_requests: usize,
    /// Largest request body, bytes.
    pub max_body_bytes: usize,
    /// Per-request deadline, ms.
    pub request_timeout_ms: u64,
    /// Requests per second one client address may make (429 `rate_limited` above); 0 =
    /// unlimited.
    pub max_requests_per_client_per_sec: u64,
    /// OS niceness of the RPC threads (0..=19; 0 = same as consensus).
    pub thread_niceness: u8,
    /// Transaction submissions are limited (503 `congested`) while the median interval of
    /// the last 9 round-0 blocks exceeds this much of the idle median, per mille.
    pub tx_admission_target_permille: u32,
    /// The limit never goes below this many transactions/s.
    pub tx_admission_min_per_sec: u64,
}

impl Default for RpcSection {
    fn default() -> Self {
        RpcSection {
            listen_addr: "127.0.0.1:26657".into(),
            worker_threads: 2,
            max_concurrent_requests: 256,
            max_body_bytes: 4 * 1024 * 1024,
            request_timeout_ms: 10_000,
            max_requests_per_client_per_sec: basalt_rpc::REQUESTS_PER_CLIENT_PER_SEC_DEFAULT,
            thread_niceness: basalt_rpc::THREAD_NICENESS_DEFAULT,
            tx_admission_target_permille: crate::admission::TARGET_PERMILLE_DEFAULT,
            tx_admission_min_per_sec: crate::admission::MIN_PER_SEC_DEFAULT,
        }
    }
}

/// Default OS niceness of the transaction-verification threads: the RPC's (an HTTP flood's
/// transactions are checked there). Measured under `http-flood` (CW 40, 60 s, two runs
/// each): at 0, 920 and 1,394 transfers/s committed with block time 1.20× and 1.18× idle;
/// at 10, 1,547 and 1,726 with 1.12× and 1.14×.
pub const VERIFY_NICENESS_DEFAULT: u8 = basalt_rpc::THREAD_NICENESS_DEFAULT;

/// Mempool bounds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct MempoolSection {
    /// Most pending transactions.
    pub size: usize,
    /// Most pending bytes.
    pub max_bytes: usize,
    /// Most pending transactions of one sender.
    pub per_sender_max: usize,
    /// Most transactions per block the proposer takes.
    pub block_txs_max: usize,
    /// Most transaction bytes per block.
    pub block_bytes_max: usize,
    /// OS niceness of the threads that verify new transactions (0..=19; 0 = same as
    /// consensus).
    pub verify_niceness: u8,
    /// A transaction goes into this node's proposals only once it has been pending this
    /// long (ms): by then its gossip batch has most likely reached and been verified by the
    /// other validators, who would otherwise check its signature inside the proposal, on
    /// the consensus path. 0 = propose whatever is pending.
    pub reap_min_age_ms: u64,
}

/// Default of [`MempoolSection::reap_min_age_ms`]: the gossip batch window (5 ms) plus a
/// few milliseconds for delivery and verification at the peers.
pub const REAP_MIN_AGE_MS_DEFAULT: u64 = 10;

impl Default for MempoolSection {
    fn default() -> Self {
        MempoolSection {
            size: 100_000,
            max_bytes: 256 * 1024 * 1024,
            per_sender_max: 4096,
            block_txs_max: 5_000,
            block_bytes_max: 4 * 1024 * 1024,
            verify_niceness: VERIFY_NICENESS_DEFAULT,
            reap_min_age_ms: REAP_MIN_AGE_MS_DEFAULT,
        }
    }
}

/// Flood protections (seeds 000 and 001). Each can be switched off only to measure what it
/// prevents (`basalt bench` before/after runs); never in production.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct ProtectionsSection {
    /// The consensus driver takes at most 64 network inputs per turn before it looks at
    /// its timers again (off: it drains its whole queue first).
    pub bounded_drain: bool,
    /// The pending buffer holds at most 1024 messages (off: unbounded).
    pub pending_cap: bool,
    /// Block fetches are de-duplicated and at most 8 are in flight, and only a quorum of
    /// precommits for an unknown block fetches it (off: every vote for an unknown block
    /// fires a fetch).
    pub fetch_cap: bool,
    /// While syncing, consensus messages wait in the pending buffer; with no peers, gossip
    /// is dropped (off: everything is processed at once).
    pub sync_gating: bool,
    /// Messages for heights beyond the window, or rounds beyond the core's window, are
    /// dropped before their signatures are checked (off: everything is verified).
    pub early_drop: bool,
    /// One peer may hand at most 2,000 consensus messages per second to the node (off:
    /// unlimited, and a flooding peer can fill the event queue).
    pub peer_gossip_rate: bool,
    /// Transaction submissions are limited while blocks come slower than idle (off: every
    /// submission goes to verification).
    pub latency_admission: bool,
}

impl Default for ProtectionsSection {
    fn default() -> Self {
        ProtectionsSection {
            bounded_drain: true,
            pending_cap: true,
            fetch_cap: true,
            sync_gating: true,
            early_drop: true,
            peer_gossip_rate: true,
            latency_admission: true,
        }
    }
}

/// The whole `config.toml`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// Human name of the node.
    pub moniker: String,
    /// Consensus timing.
    pub consensus: ConsensusConfig,
    /// Networking.
    pub p2p: P2pSection,
    /// RPC.
    pub rpc: RpcSection,
    /// Mempool.
    pub mempool: MempoolSection,
    /// Flood protections.
    pub protections: ProtectionsSection,
}

/// Files of a node home, laid out as CometBFT operators expect.
#[derive(Debug, Clone)]
pub struct HomeLayout {
    /// The home directory.
    pub home: PathBuf,
}

impl HomeLayout {
    /// Layout under `home`.
    pub fn new(home: &Path) -> HomeLayout {
        HomeLayout {
            home: home.to_path_buf(),
        }
    }
    /// `config/config.toml`.
    pub fn config(&self) -> PathBuf {
        self.home.join("config/config.toml")
    }
    /// `config/genesis.json`.
    pub fn genesis(&self) -> PathBuf {
        self.home.join("config/genesis.json")
    }
    /// `config/node_key.json` (libp2p identity).
    pub fn node_key(&self) -> PathBuf {
        self.home.join("config/node_key.json")
    }
    /// `config/priv_validator_key.json` (consensus signing key).
    pub fn validator_key(&self) -> PathBuf {
        self.home.join("config/priv_validator_key.json")
    }
    /// `data/basalt.redb`.
    pub fn database(&self) -> PathBuf {
        self.home.join("data/basalt.redb")
    }
}

/// A key file: the ed25519 seed and its public key, hex.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyFile {
    /// Public key, hex.
    pub public_key: String,
    /// Secret seed, hex. Whoever reads this file can sign as this key.
    pub secret_seed: String,
}

impl KeyFile {
    /// A key file for `keypair`.
    pub fn new(keypair: &basalt_types::Keypair) -> KeyFile {
        KeyFile {
            public_key: keypair.public().to_hex(),
            secret_seed: hex::encode(keypair.seed()),
        }
    }

    /// The keypair, checking the public key matches the seed.
    pub fn keypair(&self) -> anyhow::Result<basalt_types::Keypair> {
        let mut seed = [0u8; 32];
        hex::decode_to_slice(&self.secret_seed, &mut seed)
            .map_err(|e| anyhow::anyhow!("key file: bad secret seed: {e}"))?;
        let keypair = basalt_types::Keypair::from_seed(seed);
        anyhow::ensure!(
            keypair.public().to_hex() == self.public_key,
            "key file: public key does not match the secret seed"
        );
        Ok(keypair)
    }

    /// Read from `path`.
    pub fn read(path: &Path) -> anyhow::Result<KeyFile> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        Ok(serde_json::from_str(&text)?)
    }
}

impl NodeConfig {
    /// The transaction admission controller's setup.
    pub fn admission(&self) -> crate::admission::AdmissionConfig {
        crate::admission::AdmissionConfig {
            enabled: self.protections.latency_admission,
            target_permille: self.rpc.tx_admission_target_permille,
            min_per_sec: self.rpc.tx_admission_min_per_sec,
        }
    }

    /// Load `path` and apply `BASALT__SECTION__KEY` environment overrides.
    pub fn load(path: &Path) -> anyhow::Result<NodeConfig> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        let mut value: toml::Table = toml::from_str(&text)?;
        apply_env_overrides(&mut value, std::env::vars())?;
        Ok(toml::Value::Table(value).try_into()?)
    }

    /// The consensus core's configuration.
    pub fn consensus_core(&self) -> basalt_consensus::Config {
        let c = &self.consensus;
        basalt_consensus::Config {
            timeouts: basalt_consensus::Timeouts {
                propose_ms: c.timeout_propose_ms,
                propose_delta_ms: c.timeout_propose_delta_ms,
                prevote_ms: c.timeout_prevote_ms,
                prevote_delta_ms: c.timeout_prevote_delta_ms,
                precommit_ms: c.timeout_precommit_ms,
                precommit_delta_ms: c.timeout_precommit_delta_ms,
            },
            commit_wait_ms: c.commit_wait_ms,
            test_disable_locking: false,
        }
    }

    /// The documented `config.toml` text for this configuration.
    pub fn to_documented_toml(&self) -> String {
        let c = &self.consensus;
        let p = &self.p2p;
        let r = &self.rpc;
        let m = &self.mempool;
        let peers: Vec<String> = p
            .persistent_peers
            .iter()
            .map(|s| format!("{s:?}"))
            .collect();
        format!(
            r#"# Basalt node configuration. Every field may be overridden from the environment as
# BASALT__SECTION__KEY=value (top-level fields: BASALT__KEY), e.g. BASALT__RPC__LISTEN_ADDR.

# Human-readable name of this node (logs, status).
moniker = {moniker:?}

[consensus]
# Wait for the round's proposal before prevoting nil (round 0), and the growth per round.
timeout_propose_ms = {tp}
timeout_propose_delta_ms = {tpd}
# After 2f+1 prevotes of mixed values, wait this long before precommitting nil.
timeout_prevote_ms = {tv}
timeout_prevote_delta_ms = {tvd}
# After 2f+1 precommits of mixed values, wait this long before the next round.
timeout_precommit_ms = {tc}
timeout_precommit_delta_ms = {tcd}
# Wait after a commit before starting the next height (0 = at once; larger values make
# fuller blocks and slower empty blocks).
commit_wait_ms = {cw}
# Re-send this node's own votes of the current height this often (repairs lost messages).
rebroadcast_interval_ms = {rb}

[p2p]
# libp2p listen multiaddr.
listen_addr = {pl:?}
# Static peers, each a multiaddr ending in /p2p/<peer id>; re-dialed when disconnected.
persistent_peers = [{peers}]

[rpc]
# HTTP listen address of the node API (/v1, /metrics, /openapi.json).
listen_addr = {rl:?}
# Threads of the RPC's own runtime (kept apart from consensus).
worker_threads = {rw}
# Requests served at once; beyond this requests are shed with 503 "overloaded".
max_concurrent_requests = {rc}
# Largest accepted request body, bytes (413 beyond).
max_body_bytes = {rbb}
# Deadline of one request, ms (503 "timeout" beyond).
request_timeout_ms = {rt}
# Requests per second one client address may make (bursts of 2 s worth); above, 429
# "rate_limited". 0 = unlimited.
max_requests_per_client_per_sec = {rpc_rate}
# OS niceness of the RPC threads (0..=19): when CPU is short, consensus runs first and an
# HTTP flood slows the RPC, not the chain. 0 = same priority as consensus.
thread_niceness = {rpc_nice}
# Transaction admission follows consensus latency: while the median interval of the last 9
# blocks decided in round 0 exceeds this much of the median interval of empty blocks (per
# mille), this node admits its clients' transactions at a limited rate (503 "congested"
# beyond it), cut by a quarter while blocks stay slow and raised while they are fast.
tx_admission_target_permille = {rpc_adm_target}
# The limit never goes below this many transactions/s.
tx_admission_min_per_sec = {rpc_adm_min}

[mempool]
# Most pending transactions, and most pending bytes; beyond either, submissions get
# "mempool_full".
size = {ms}
max_bytes = {mb}
# Most pending transactions of one sender.
per_sender_max = {mp}
# Most transactions, and transaction bytes, a proposer puts into one block.
block_txs_max = {mbt}
block_bytes_max = {mbb}
# OS niceness of the threads that check new transactions' signatures (0..=19): when CPU is
# short, consensus runs first and admission slows. 0 = same priority as consensus.
verify_niceness = {mvn}
# A transaction is proposed only once pending this long (ms), so that the other validators
# most likely verified it already, off the consensus path. 0 = propose whatever is pending.
reap_min_age_ms = {mra}

[protections]
# Flood protections (seeds 000/001). Switch one off only to measure what it prevents.
# The consensus driver takes at most 64 network inputs per turn before its timers.
bounded_drain = {pbd}
# The pending buffer (future heights; everything while syncing) holds at most 1024.
pending_cap = {ppc}
# Block fetches de-duplicated, at most 8 in flight, one per unknown decided block.
fetch_cap = {pfc}
# While syncing consensus messages wait; with no peers gossip is dropped.
sync_gating = {psg}
# Far-future heights and rounds dropped before signature checks.
early_drop = {ped}
# One peer hands at most 2,000 consensus messages per second to the node.
peer_gossip_rate = {ppr}
# Transaction submissions limited while blocks come slower than idle (see [rpc]).
latency_admission = {pla}
"#,
            moniker = self.moniker,
            tp = c.timeout_propose_ms,
            tpd = c.timeout_propose_delta_ms,
            tv = c.timeout_prevote_ms,
            tvd = c.timeout_prevote_delta_ms,
            tc = c.timeout_precommit_ms,
            tcd = c.timeout_precommit_delta_ms,
            cw = c.commit_wait_ms,
            rb = c.rebroadcast_interval_ms,
            pl = p.listen_addr,
            peers = peers.join(", "),
            rl = r.listen_addr,
            rw = r.worker_threads,
            rc = r.max_concurrent_requests,
            rbb = r.max_body_bytes,
            rt = r.request_timeout_ms,
            rpc_rate = r.max_requests_per_client_per_sec,
            rpc_nice = r.thread_niceness,
            rpc_adm_target = r.tx_admission_target_permille,
            rpc_adm_min = r.tx_admission_min_per_sec,
            ms = m.size,
            mb = m.max_bytes,
            mp = m.per_sender_max,
            mbt = m.block_txs_max,
            mbb = m.block_bytes_max,
            mvn = m.verify_niceness,
            mra = m.reap_min_age_ms,
            pbd = self.protections.bounded_drain,
            ppc = self.protections.pending_cap,
            pfc = self.protections.fetch_cap,
            psg = self.protections.sync_gating,
            ped = self.protections.early_drop,
            ppr = self.protections.peer_gossip_rate,
            pla = self.protections.latency_admission,
        )
    }
}

/// Apply `BASALT__SECTION__KEY=value` (or `BASALT__KEY=value`) overrides. Values parse as
/// TOML (numbers, booleans, arrays) and fall back to strings.
pub fn apply_env_overrides(
    table: &mut toml::Table,
    vars: impl Iterator<Item = (String, String)>,
) -> anyhow::Result<()> {
    for (name, raw) in vars {
        let Some(path) = name.strip_prefix("BASALT__") else {
            continue;
        };
        let parts: Vec<String> = path.split("__").map(|p| p.to_lowercase()).collect();
        let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or(toml::Value::String(raw));
        match parts.as_slice() {
            [key] => {
                table.insert(key.clone(), value);
            }
            [section, key] => {
                let entry = table
                    .entry(section.clone())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                let toml::Value::Table(section_table) = entry else {
                    anyhow::bail!("{name}: [{section}] is not a section");
                };
                section_table.insert(key.clone(), value);
            }
            _ => anyhow::bail!("{name}: expected BASALT__SECTION__KEY"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_toml_round_trips_and_env_overrides_apply() {
        let config = NodeConfig {
            moniker: "n0".into(),
            ..NodeConfig::default()
        };
        let text = config.to_documented_toml();
        let mut table: toml::Table = toml::from_str(&text).unwrap();
        let parsed: NodeConfig = toml::Value::Table(table.clone()).try_into().unwrap();
        assert_eq!(parsed, config);
        apply_env_overrides(
            &mut table,
            vec![
                ("BASALT__CONSENSUS__COMMIT_WAIT_MS".into(), "25".into()),
                ("BASALT__RPC__LISTEN_ADDR".into(), "0.0.0.0:1".into()),
                ("BASALT__MONIKER".into(), "x".into()),
                ("OTHER".into(), "1".into()),
            ]
            .into_iter(),
        )
        .unwrap();
        let overridden: NodeConfig = toml::Value::Table(table).try_into().unwrap();
        assert_eq!(overridden.consensus.commit_wait_ms, 25);
        assert_eq!(overridden.rpc.listen_addr, "0.0.0.0:1");
        assert_eq!(overridden.moniker, "x");
    }
}
