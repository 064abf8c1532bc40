//! What the node and the networking task say to each other: topics, events, commands, and
//! the sync protocol's requests and responses.

use basalt_types::{Block, CommitCertificate, Hash};
use borsh::{BorshDeserialize, BorshSerialize};
use libp2p::gossipsub::{IdentTopic, MessageId, TopicHash};
use libp2p::request_response::{OutboundRequestId, ResponseChannel};
use libp2p::PeerId;
use tokio::sync::oneshot;

/// A gossip topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Topic {
    /// Proposals (with their block) and votes: `basalt/consensus/1`.
    Consensus,
    /// Transaction batches: `basalt/txs/2` (2: batches carry their `relay` flag; a node of
    /// the first format would reject every batch of the second and ban its sender).
    Txs,
}

impl Topic {
    /// Every topic, consensus first.
    pub const ALL: [Topic; 2] = [Topic::Consensus, Topic::Txs];

    /// The gossipsub topic string.
    pub fn name(self) -> &'static str {
        match self {
            Topic::Consensus => "basalt/consensus/1",
            Topic::Txs => "basalt/txs/2",
        }
    }

    pub(crate) fn ident(self) -> IdentTopic {
        IdentTopic::new(self.name())
    }

    pub(crate) fn hash(self) -> TopicHash {
        self.ident().hash()
    }

    pub(crate) fn from_hash(hash: &TopicHash) -> Option<Topic> {
        Topic::ALL
            .into_iter()
            .find(|topic| topic.name() == hash.as_str())
    }
}

/// Identifies a received gossip message for [`NetworkCommand::Validate`]. It is the sha256 of
/// the topic and the payload, so identical payloads share one id and are delivered once.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GossipId(pub(crate) MessageId);

impl GossipId {
    /// The raw id bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0 .0
    }

    /// An id from raw bytes (tests and tools that feed the node without a network).
    pub fn from_bytes(bytes: Vec<u8>) -> GossipId {
        GossipId(MessageId::new(&bytes))
    }
}

/// The node's judgement of a gossip message after decoding and checking it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Valid: forward it to the mesh.
    Accept,
    /// Valid, but not forwarded: its publisher sent it to every peer that needs it
    /// directly, so forwarding would only deliver duplicates (in a full mesh of `n` peers,
    /// `n - 2` of them per peer).
    AcceptLocal,
    /// Invalid: drop it, penalise the peer that sent it (gossipsub score and the local
    /// invalid-message count that leads to a ban).
    Reject,
    /// Not useful now (stale, duplicate at the application level, node busy): drop it
    /// without penalty.
    Ignore,
}

/// Identifies an outbound sync request; the matching [`NetworkEvent::Response`] carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestToken(pub(crate) OutboundRequestId);

/// The handle to answer one inbound sync request with [`NetworkCommand::Respond`]. Dropping
/// it without answering closes the request's stream (the requester sees a failure).
#[derive(Debug)]
pub struct ResponseToken {
    pub(crate) channel: ResponseChannel<SyncResponse>,
    pub(crate) peer: PeerId,
}

impl ResponseToken {
    /// The peer that asked.
    pub fn peer(&self) -> PeerId {
        self.peer
    }

    /// False once the request timed out or its connection closed; answering is then useless.
    pub fn is_open(&self) -> bool {
        self.channel.is_open()
    }
}

/// A sync request (borsh on the wire, at most [`crate::SYNC_REQUEST_BYTES_MAX`] bytes).
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum SyncRequest {
    /// The peer's latest committed height and block id.
    Status,
    /// Committed blocks with their certificates, `count` of them from `from_height` on.
    BlocksByRange {
        /// First height wanted.
        from_height: u64,
        /// How many; the responder may send fewer.
        count: u32,
    },
    /// One committed block by id.
    BlockByHash(Hash),
}

/// A sync response (borsh on the wire, at most [`crate::SYNC_RESPONSE_BYTES_MAX`] bytes and
/// [`crate::SYNC_BLOCKS_PER_RESPONSE_MAX`] blocks).
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum SyncResponse {
    /// Answer to [`SyncRequest::Status`].
    Status {
        /// Latest committed height.
        height: u64,
        /// Id of the block at that height.
        block_id: Hash,
    },
    /// Committed blocks in height order, each with the certificate that committed it.
    Blocks(Vec<(Block, CommitCertificate)>),
    /// The responder has nothing for this request.
    NotFound,
    /// The responder is too busy to answer; ask someone else or later.
    Refused,
}

/// Why an outbound sync request produced no response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestFailure {
    /// The peer could not be dialed (or is banned).
    #[error("could not dial the peer")]
    DialFailure,
    /// No response within the request timeout.
    #[error("request timed out")]
    Timeout,
    /// The connection closed before the response arrived.
    #[error("connection closed before the response")]
    ConnectionClosed,
    /// The peer does not speak the sync protocol.
    #[error("peer does not support the sync protocol")]
    UnsupportedProtocol,
    /// The peer answered with bytes that are not a valid response (counted against it).
    #[error("invalid response: {0}")]
    InvalidResponse(String),
    /// The stream failed (reset, truncated, ...).
    #[error("stream error: {0}")]
    Io(String),
}

/// What the networking task tells the node.
#[derive(Debug)]
pub enum NetworkEvent {
    /// A gossip message, raw. The node decodes and checks it, then MUST answer with
    /// [`NetworkCommand::Validate`] (gossipsub holds it until then and forwards it only
    /// after `Accept`).
    Gossip {
        /// The peer that forwarded it to us (not necessarily its author).
        from: PeerId,
        /// Its topic.
        topic: Topic,
        /// The payload.
        data: Vec<u8>,
        /// Its id, for the verdict.
        id: GossipId,
    },
    /// A sync request; answer with [`NetworkCommand::Respond`].
    Request {
        /// Who asks.
        from: PeerId,
        /// What.
        request: SyncRequest,
        /// Where the answer goes.
        channel: ResponseToken,
    },
    /// The outcome of one of our sync requests.
    Response {
        /// Who was asked.
        from: PeerId,
        /// Which request.
        request: RequestToken,
        /// The answer, or why there is none.
        result: Result<SyncResponse, RequestFailure>,
    },
    /// The first connection to a peer was established.
    PeerConnected(PeerId),
    /// The last connection to a peer closed.
    PeerDisconnected(PeerId),
}

/// What the node tells the networking task.
#[derive(Debug)]
pub enum NetworkCommand {
    /// Gossip `data` on `topic` (to every subscribed peer: flood publish).
    Publish {
        /// The topic.
        topic: Topic,
        /// The payload, at most `max_gossip_bytes`.
        data: Vec<u8>,
    },
    /// The verdict on a received gossip message.
    Validate {
        /// The message.
        id: GossipId,
        /// The peer it came from (the `from` of its [`NetworkEvent::Gossip`]).
        from: PeerId,
        /// The verdict.
        verdict: Verdict,
    },
    /// Send a sync request; its token comes back on `reply` at once, the answer later as a
    /// [`NetworkEvent::Response`].
    Request {
        /// Whom to ask (dialed if not connected and its address is known).
        peer: PeerId,
        /// What to ask.
        request: SyncRequest,
        /// Receives the token that the response will carry.
        reply: oneshot::Sender<RequestToken>,
    },
    /// Answer an inbound sync request.
    Respond {
        /// The request's token.
        channel: ResponseToken,
        /// The answer. An answer larger than [`crate::SYNC_RESPONSE_BYTES_MAX`] is replaced
        /// by [`SyncResponse::Refused`].
        response: SyncResponse,
    },
    /// Stop the networking task (also happens when every handle is dropped).
    Shutdown,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_round_trip_through_their_hash() {
        for topic in Topic::ALL {
            assert_eq!(Topic::from_hash(&topic.hash()), Some(topic));
        }
        assert_eq!(Topic::from_hash(&TopicHash::from_raw("other")), None);
    }

    #[test]
    fn sync_encoding_is_stable() {
        // Pin the wire format: a change here is a protocol change.
        let request = SyncRequest::BlocksByRange {
            from_height: 7,
            count: 3,
        };
        assert_eq!(
            basalt_types::encode(&request),
            vec![1, 7, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0]
        );
        let response = SyncResponse::Status {
            height: 1,
            block_id: Hash([0xab; 32]),
        };
        let bytes = basalt_types::encode(&response);
        assert_eq!(bytes.len(), 1 + 8 + 32);
        assert_eq!(bytes.first(), Some(&0));
        assert_eq!(basalt_types::encode(&SyncResponse::Refused), vec![3]);
    }
}
