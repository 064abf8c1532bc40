//! The composed libp2p behaviour: connection gates, gossipsub, sync request-response and
//! identify, with the gossipsub configuration and peer-scoring parameters.

use std::time::Duration;

use libp2p::gossipsub::{
    self, MessageAuthenticity, MessageId, PeerScoreParams, PeerScoreThresholds, TopicScoreParams,
    ValidationMode,
};
use libp2p::swarm::NetworkBehaviour;
use libp2p::{allow_block_list, connection_limits, identify, identity, request_response};

use crate::codec::{SyncCodec, SYNC_PROTOCOL};
use crate::config::{
    P2pConfig, CONNECTIONS_MAX, CONNECTIONS_PER_PEER_MAX, GOSSIP_DUPLICATE_CACHE,
    GOSSIP_ENVELOPE_BYTES, GOSSIP_HEARTBEAT, GOSSIP_PEER_QUEUE_LEN, INVALID_MESSAGES_WINDOW,
    PENDING_INBOUND_CONNECTIONS_MAX, SYNC_STREAMS_PER_CONNECTION_MAX,
};
use crate::keep_alive;
use crate::message::Topic;
use crate::P2pError;

/// Identify protocol version string.
const IDENTIFY_PROTOCOL: &str = "/basalt/1";

/// Mesh degree: every peer of a 4-validator network (3 others) is in the mesh.
const MESH_N: usize = 3;
/// Below this many mesh peers the heartbeat grafts more.
const MESH_N_LOW: usize = 2;
/// Above this many the heartbeat prunes.
const MESH_N_HIGH: usize = 6;
/// Outbound peers kept in the mesh (eclipse resistance); must be <= MESH_N_LOW and
/// 2 * it <= MESH_N, which gossipsub's config builder checks.
const MESH_OUTBOUND_MIN: usize = 1;
/// Message ids in one IHAVE (and asked for in IWANTs) at most. Receivers refuse an RPC whose
/// control part exceeds gossipsub's `max_control_message_size` (16 KiB): the default, 5,000
/// ids of 34 encoded bytes each, is 170 KB, and at 200 ms heartbeats three heartbeats of
/// gossip history held ~720 ids (~24 KB) at idle. A refused RPC closes the receiver's side
/// of the stream; the sender never learns, keeps writing into a stream nobody reads, and
/// the link is dead in both directions from then on (seen on idle devnets: two validators
/// dropping ~190 messages a second each to each other, `Send Queue full`). Lazy gossip is
/// now off (no IHAVE is sent); the bound stays for IWANTs and in case it is turned back on.
const IHAVE_IDS_MAX: usize = 400;
/// Encoded bytes of one message id in an IHAVE: field tag, length, 32-byte content hash.
const IHAVE_ID_BYTES: usize = 2 + 32;
/// Largest control part of an RPC a peer accepts (gossipsub's default, set explicitly so
/// that an upgrade cannot move it under `IHAVE_IDS_MAX`).
const CONTROL_MESSAGE_BYTES_MAX: usize = 16 * 1024;
// The largest IHAVE, with room for the topic and framing, fits what a receiver accepts.
const _: () = assert!(IHAVE_IDS_MAX * IHAVE_ID_BYTES + 256 <= CONTROL_MESSAGE_BYTES_MAX);
/// First heartbeat soon after start, so a fresh network forms its mesh within a round.
const HEARTBEAT_INITIAL_DELAY: Duration = Duration::from_millis(100);

/// The behaviour. Gates come first so a banned or excess connection is refused before the
/// protocol handlers are involved.
#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    pub(crate) block_list: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    pub(crate) limits: connection_limits::Behaviour,
    pub(crate) keep_alive: keep_alive::Behaviour,
    pub(crate) gossipsub: gossipsub::Behaviour,
    pub(crate) sync: request_response::Behaviour<SyncCodec>,
    pub(crate) identify: identify::Behaviour,
}

impl Behaviour {
    pub(crate) fn new(
        keypair: &identity::Keypair,
        config: &P2pConfig,
        static_peers: impl IntoIterator<Item = libp2p::PeerId>,
    ) -> Result<Self, P2pError> {
        let limits = connection_limits::ConnectionLimits::default()
            .with_max_established(Some(CONNECTIONS_MAX))
            .with_max_pending_incoming(Some(PENDING_INBOUND_CONNECTIONS_MAX))
            .with_max_established_per_peer(Some(CONNECTIONS_PER_PEER_MAX));
        let sync = request_response::Behaviour::with_codec(
            SyncCodec,
            [(SYNC_PROTOCOL, request_response::ProtocolSupport::Full)],
            request_response::Config::default()
                .with_request_timeout(config.request_timeout)
                .with_max_concurrent_streams(SYNC_STREAMS_PER_CONNECTION_MAX),
        );
        let identify = identify::Behaviour::new(identify::Config::new(
            IDENTIFY_PROTOCOL.to_owned(),
            keypair.public(),
        ));
        Ok(Self {
            block_list: allow_block_list::Behaviour::default(),
            limits: connection_limits::Behaviour::new(limits),
            keep_alive: keep_alive::Behaviour::new(static_peers),
            gossipsub: gossipsub_behaviour(config)?,
            sync,
            identify,
        })
    }
}

/// Message id: sha256 over the topic and the payload. Anonymous messages carry no author or
/// sequence number, so the default id (author + seqno) would make every message collide;
/// a content hash also makes identical re-sends one message.
fn content_message_id(message: &gossipsub::Message) -> MessageId {
    let hash = basalt_types::crypto::sha256_parts(&[
        message.topic.as_str().as_bytes(),
        &[0u8],
        &message.data,
    ]);
    MessageId::new(&hash.0)
}

fn gossipsub_config(config: &P2pConfig) -> Result<gossipsub::Config, P2pError> {
    gossipsub::ConfigBuilder::default()
        // Anonymous mode: no signatures or author fields (consensus messages carry their own
        // validator signatures); incoming messages that carry them are refused.
        .validation_mode(ValidationMode::Anonymous)
        .message_id_fn(content_message_id)
        // Hold every message until the node's verdict; forward only on Accept.
        .validate_messages()
        .max_transmit_size(
            config
                .max_gossip_bytes
                .saturating_add(GOSSIP_ENVELOPE_BYTES),
        )
        .mesh_n(MESH_N)
        .mesh_n_low(MESH_N_LOW)
        .mesh_n_high(MESH_N_HIGH)
        .mesh_outbound_min(MESH_OUTBOUND_MIN)
        .max_control_messages_sent(IHAVE_IDS_MAX)
        .max_control_message_size(CONTROL_MESSAGE_BYTES_MAX)
        // No lazy gossip (IHAVE/IWANT), sent or answered. Every message already reaches
        // every validator by flood publishing and the full mesh, and consensus re-sends its
        // own votes and fetches missing blocks. Answering IHAVEs leaked: each IWANT leaves a
        // promise that gossipsub expires only when peer scoring is on, so a peer that
        // advertises ids and never delivers (gossip-flood's flooder) grew the flooded
        // validator by ~1 MiB/s (50 → 100 MiB in 60 s).
        .gossip_lazy(0)
        .gossip_factor(0.0)
        .max_ihave_messages_heartbeat(0)
        // With lazy gossip off, the message ids of past heartbeats to advertise are never
        // used, but each heartbeat still collected them (a topic compare and a cache lookup
        // per message received in the last 3 heartbeats: ~12,000 every 200 ms under
        // gossip-flood, ~7 % of the flooded validator's network thread).
        .history_gossip(0)
        .flood_publish(true)
        .heartbeat_initial_delay(HEARTBEAT_INITIAL_DELAY)
        .heartbeat_interval(GOSSIP_HEARTBEAT)
        .duplicate_cache_time(GOSSIP_DUPLICATE_CACHE)
        .connection_handler_queue_len(GOSSIP_PEER_QUEUE_LEN)
        .build()
        .map_err(|error| P2pError::Gossipsub(error.to_string()))
}

fn gossipsub_behaviour(config: &P2pConfig) -> Result<gossipsub::Behaviour, P2pError> {
    let mut behaviour =
        gossipsub::Behaviour::new(MessageAuthenticity::Anonymous, gossipsub_config(config)?)
            .map_err(|error| P2pError::Gossipsub(error.to_owned()))?;
    if config.gossip_peer_scoring {
        let thresholds = PeerScoreThresholds::default();
        behaviour
            .with_peer_score(
                score_params(config.invalid_messages_before_disconnect, &thresholds),
                thresholds,
            )
            .map_err(P2pError::Gossipsub)?;
    }
    for topic in Topic::ALL {
        behaviour
            .subscribe(&topic.ident())
            .map_err(|error| P2pError::Gossipsub(error.to_string()))?;
    }
    Ok(behaviour)
}

/// Peer scoring: gossipsub only penalises a `Reject` verdict when scoring is on, so it is on,
/// with one active component, invalid message deliveries (P4). P4 grows with the square of
/// the invalid count; its weight puts a peer exactly at the graylist threshold after
/// `invalid_before_disconnect` rejects, so gossipsub's own response is graded on the way
/// there (no gossip to it past the gossip threshold, no publishing to it past the publish
/// threshold) and coincides with our ban at the end.
///
/// Components that would punish an honest validator in a small, quiet network are off:
/// time in mesh and first deliveries (rewards only), mesh delivery rate (a quiet topic would
/// look like a failing peer), and IP colocation (a devnet runs every validator on one IP).
pub(crate) fn score_params(
    invalid_before_disconnect: u32,
    thresholds: &PeerScoreThresholds,
) -> PeerScoreParams {
    let tolerated = f64::from(invalid_before_disconnect.max(1));
    let topic = TopicScoreParams {
        topic_weight: 1.0,
        time_in_mesh_weight: 0.0,
        first_message_deliveries_weight: 0.0,
        mesh_message_deliveries_weight: 0.0,
        mesh_failure_penalty_weight: 0.0,
        invalid_message_deliveries_weight: thresholds.graylist_threshold / (tolerated * tolerated),
        invalid_message_deliveries_decay: gossipsub::score_parameter_decay(INVALID_MESSAGES_WINDOW),
        ..TopicScoreParams::default()
    };
    PeerScoreParams {
        topics: Topic::ALL
            .into_iter()
            .map(|t| (t.hash(), topic.clone()))
            .collect(),
        ip_colocation_factor_weight: 0.0,
        ..PeerScoreParams::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn score_params_are_valid_and_reach_graylist_at_threshold() {
        let thresholds = PeerScoreThresholds::default();
        for threshold in [0, 1, 16, 1000] {
            let params = score_params(threshold, &thresholds);
            params.validate().unwrap();
            let topic = params.topics.values().next().unwrap();
            let n = f64::from(threshold.max(1));
            let score = topic.topic_weight * topic.invalid_message_deliveries_weight * n * n;
            assert!((score - thresholds.graylist_threshold).abs() < 1e-9);
        }
    }

    #[test]
    fn gossipsub_config_builds() {
        let listen = "/ip4/127.0.0.1/tcp/0".parse().unwrap();
        let config = P2pConfig::new([7; 32], listen);
        let built = gossipsub_config(&config).unwrap();
        assert_eq!(built.mesh_n(), MESH_N);
        assert!(built.validate_messages());
        // What we send is bounded as the compile-time check assumes (a larger IHAVE kills
        // the link: see IHAVE_IDS_MAX).
        assert_eq!(built.max_control_messages_sent(), IHAVE_IDS_MAX);
        assert_eq!(built.max_control_message_size(), CONTROL_MESSAGE_BYTES_MAX);
        // No IHAVE goes out and none is answered (see gossipsub_config).
        assert_eq!(built.gossip_lazy(), 0);
        assert!(built.gossip_factor().abs() < f64::EPSILON);
        assert_eq!(built.max_ihave_messages_heartbeat(), 0);
        gossipsub_behaviour(&config).unwrap();
    }
}
