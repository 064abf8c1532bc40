//! Loopback tests of the networking service: gossip, validation-gated forwarding, sync
//! request-response, bans, static-peer re-dial and garbage on the socket.
//!
//! Every wait has a deadline; nothing sleeps a fixed time except the windows that assert
//! that something does *not* happen.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::future::Future;
use std::time::{Duration, Instant};

use basalt_p2p::{
    read_counter, spawn, GossipId, Multiaddr, NetworkEvent, NetworkHandle, P2pConfig, PeerId,
    RequestFailure, SyncRequest, SyncResponse, Topic, Verdict,
};
use basalt_types::{Block, BlockHeader, BoundedVec, CommitCertificate, Hash};
use libp2p::multiaddr::Protocol;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio::time::timeout;

/// Upper bound for anything that should happen "soon" on loopback.
const DEADLINE: Duration = Duration::from_secs(20);
/// How long to watch for something that must not happen.
const QUIET_WINDOW: Duration = Duration::from_millis(700);

struct Node {
    handle: NetworkHandle,
    events: mpsc::Receiver<NetworkEvent>,
    /// Dialable address ending in /p2p/<peer id>.
    address: Multiaddr,
}

impl Node {
    fn id(&self) -> PeerId {
        self.handle.peer_id()
    }
}

fn seed(n: u8) -> [u8; 32] {
    [n; 32]
}

async fn start_with(config: P2pConfig) -> Node {
    let (handle, events) = spawn(config).unwrap();
    let listen = handle.listen_addrs().await;
    let address = listen
        .first()
        .unwrap()
        .clone()
        .with(Protocol::P2p(handle.peer_id()));
    Node {
        handle,
        events,
        address,
    }
}

async fn start(seed_byte: u8, peers: Vec<Multiaddr>) -> Node {
    let mut config = P2pConfig::new(seed(seed_byte), "/ip4/127.0.0.1/tcp/0".parse().unwrap());
    config.peers = peers;
    start_with(config).await
}

/// Wait for the first event that `pick` maps to `Some`, discarding the others.
async fn next_event<T>(
    events: &mut mpsc::Receiver<NetworkEvent>,
    mut pick: impl FnMut(NetworkEvent) -> Option<T>,
) -> T {
    timeout(DEADLINE, async {
        loop {
            let event = events.recv().await.expect("event channel closed");
            if let Some(found) = pick(event) {
                return found;
            }
        }
    })
    .await
    .expect("no matching event before the deadline")
}

/// True if `pick` matches no event within `window`.
async fn no_event(
    events: &mut mpsc::Receiver<NetworkEvent>,
    window: Duration,
    mut pick: impl FnMut(&NetworkEvent) -> bool,
) -> bool {
    let found = timeout(window, async {
        while let Some(event) = events.recv().await {
            if pick(&event) {
                return true;
            }
        }
        false
    })
    .await;
    !matches!(found, Ok(true))
}

async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn bounded<F: Future>(test: F) -> F::Output {
    timeout(Duration::from_secs(90), test)
        .await
        .expect("test exceeded its time bound")
}

fn gossip(event: NetworkEvent) -> Option<(PeerId, Topic, Vec<u8>, GossipId)> {
    match event {
        NetworkEvent::Gossip {
            from,
            topic,
            data,
            id,
        } => Some((from, topic, data, id)),
        _ => None,
    }
}

async fn wait_subscribed(node: &Node, topic: Topic, peers: u64) {
    let stats = node.handle.stats();
    wait_until("topic subscriptions", || {
        read_counter(&stats.topic(topic).subscribed_peers) >= peers
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gossip_is_delivered_and_forwarded_only_after_accept() {
    bounded(async {
        // A line: a — b — c. a and c only reach each other through b.
        let mut b = start(11, vec![]).await;
        let mut a = start(12, vec![b.address.clone()]).await;
        let mut c = start(13, vec![b.address.clone()]).await;
        wait_until("b connected to a and c", || b.handle.connected_peers() == 2).await;
        wait_subscribed(&a, Topic::Consensus, 1).await;
        let b_stats = b.handle.stats();
        wait_until("b's mesh", || {
            read_counter(&b_stats.consensus.mesh_peers) == 2
                && read_counter(&b_stats.txs.mesh_peers) == 2
        })
        .await;

        a.handle
            .publish(Topic::Consensus, b"vote-1".to_vec())
            .await
            .unwrap();
        let (from, topic, data, id) = next_event(&mut b.events, gossip).await;
        assert_eq!(
            (from, topic, data.as_slice()),
            (a.id(), Topic::Consensus, &b"vote-1"[..])
        );

        // Not validated yet: b holds it back from c.
        assert!(
            no_event(&mut c.events, QUIET_WINDOW, |e| matches!(
                e,
                NetworkEvent::Gossip { .. }
            ))
            .await
        );

        b.handle.validate(id, from, Verdict::Accept).await.unwrap();
        let (from, topic, data, _) = next_event(&mut c.events, gossip).await;
        assert_eq!(
            (from, topic, data.as_slice()),
            (b.id(), Topic::Consensus, &b"vote-1"[..])
        );

        // The other topic, the other way.
        wait_subscribed(&c, Topic::Txs, 1).await;
        c.handle
            .publish(Topic::Txs, b"batch-1".to_vec())
            .await
            .unwrap();
        let (from, topic, data, id) = next_event(&mut b.events, gossip).await;
        assert_eq!(
            (from, topic, data.as_slice()),
            (c.id(), Topic::Txs, &b"batch-1"[..])
        );
        b.handle.validate(id, from, Verdict::Accept).await.unwrap();
        let (from, topic, _, _) = next_event(&mut a.events, gossip).await;
        assert_eq!((from, topic), (b.id(), Topic::Txs));

        // Accepted locally: delivered to b, not forwarded to a.
        c.handle
            .publish(Topic::Txs, b"batch-2".to_vec())
            .await
            .unwrap();
        let (from, _, data, id) = next_event(&mut b.events, gossip).await;
        assert_eq!((from, data.as_slice()), (c.id(), &b"batch-2"[..]));
        b.handle
            .validate(id, from, Verdict::AcceptLocal)
            .await
            .unwrap();
        assert!(
            no_event(&mut a.events, QUIET_WINDOW, |e| matches!(
                e,
                NetworkEvent::Gossip { .. }
            ))
            .await,
            "a message accepted locally is not forwarded"
        );

        assert_eq!(read_counter(&a.handle.stats().consensus.published), 1);
        assert_eq!(read_counter(&b.handle.stats().gossip_accepted), 3);
        assert!(read_counter(&b.handle.stats().consensus.received) >= 1);
        // c lists b: its one static peer is connected and subscribed. b lists nobody.
        let c_stats = c.handle.stats();
        wait_until("c's static peer gauge", || {
            read_counter(&c_stats.static_peers) == 1
                && read_counter(&c_stats.txs.subscribed_static_peers) == 1
        })
        .await;
        assert_eq!(read_counter(&b.handle.stats().static_peers), 0);
        assert_eq!(
            read_counter(&b.handle.stats().txs.subscribed_static_peers),
            0
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_mesh_publish_reaches_everyone_once() {
    bounded(async {
        let mut a = start(21, vec![]).await;
        let mut b = start(22, vec![a.address.clone()]).await;
        let mut c = start(23, vec![a.address.clone(), b.address.clone()]).await;
        for node in [&a, &b, &c] {
            wait_until("full mesh", || node.handle.connected_peers() == 2).await;
            wait_subscribed(node, Topic::Txs, 2).await;
        }
        a.handle
            .publish(Topic::Txs, b"batch".to_vec())
            .await
            .unwrap();
        // Both hear it from a directly (flood publish); neither forwards before its verdict,
        // so collect both before validating.
        let mut pending = Vec::new();
        for node in [&mut b, &mut c] {
            let (from, topic, data, id) = next_event(&mut node.events, gossip).await;
            assert_eq!(
                (from, topic, data.as_slice()),
                (a.id(), Topic::Txs, &b"batch"[..])
            );
            pending.push((id, from));
        }
        for (node, (id, from)) in [&b, &c].into_iter().zip(pending) {
            node.handle
                .validate(id, from, Verdict::Accept)
                .await
                .unwrap();
        }
        // Forwarding after Accept must not deliver it again (content id de-duplicates).
        for node in [&mut a, &mut b, &mut c] {
            assert!(
                no_event(&mut node.events, QUIET_WINDOW, |e| matches!(
                    e,
                    NetworkEvent::Gossip { .. }
                ))
                .await
            );
        }
        // An identical re-send within the duplicate window is refused at the source.
        a.handle
            .publish(Topic::Txs, b"batch".to_vec())
            .await
            .unwrap();
        wait_until("duplicate counted", || {
            read_counter(&a.handle.stats().txs.publish_duplicate) == 1
        })
        .await;
    })
    .await;
}

fn sample_blocks() -> Vec<(Block, CommitCertificate)> {
    (1..=2u64)
        .map(|height| {
            let block = Block {
                header: BlockHeader {
                    height,
                    round: 0,
                    proposer: 0,
                    parent_hash: Hash([height as u8; 32]),
                    state_root: Hash([7; 32]),
                    txs_root: Hash::ZERO,
                    time_ms: 1_000 + height,
                    last_commit_hash: Hash::ZERO,
                },
                txs: BoundedVec::empty(),
                last_commit: None,
            };
            let certificate = CommitCertificate {
                height,
                round: 0,
                block_id: block.id(),
                signatures: BoundedVec::empty(),
            };
            (block, certificate)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_requests_round_trip() {
    bounded(async {
        let mut b = start(31, vec![]).await;
        let mut a = start(32, vec![b.address.clone()]).await;
        wait_until("connected", || a.handle.connected_peers() == 1).await;

        let status = SyncResponse::Status {
            height: 42,
            block_id: Hash([4; 32]),
        };
        let blocks = SyncResponse::Blocks(sample_blocks());
        for (request, response) in [
            (SyncRequest::Status, status),
            (
                SyncRequest::BlocksByRange {
                    from_height: 1,
                    count: 2,
                },
                blocks,
            ),
            (
                SyncRequest::BlockByHash(Hash([9; 32])),
                SyncResponse::NotFound,
            ),
        ] {
            let token = a.handle.request(b.id(), request.clone()).await.unwrap();
            let (from, asked, channel) = next_event(&mut b.events, |e| match e {
                NetworkEvent::Request {
                    from,
                    request,
                    channel,
                } => Some((from, request, channel)),
                _ => None,
            })
            .await;
            assert_eq!((from, &asked), (a.id(), &request));
            assert_eq!(channel.peer(), a.id());
            b.handle.respond(channel, response.clone()).await.unwrap();
            let (from, answered, result) = next_event(&mut a.events, |e| match e {
                NetworkEvent::Response {
                    from,
                    request,
                    result,
                } => Some((from, request, result)),
                _ => None,
            })
            .await;
            assert_eq!((from, answered), (b.id(), token));
            assert_eq!(result.unwrap(), response);
        }
        assert_eq!(read_counter(&a.handle.stats().requests_outbound), 3);
        assert_eq!(read_counter(&b.handle.stats().requests_inbound), 3);
        assert_eq!(read_counter(&a.handle.stats().request_failures), 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswered_request_times_out() {
    bounded(async {
        let mut b = start(41, vec![]).await;
        let mut config = P2pConfig::new(seed(42), "/ip4/127.0.0.1/tcp/0".parse().unwrap());
        config.peers = vec![b.address.clone()];
        config.request_timeout = Duration::from_millis(800);
        let mut a = start_with(config).await;
        wait_until("connected", || a.handle.connected_peers() == 1).await;

        let started = Instant::now();
        let token = a.handle.request(b.id(), SyncRequest::Status).await.unwrap();
        // b receives it and holds the token without answering.
        let _held = next_event(&mut b.events, |e| match e {
            NetworkEvent::Request { channel, .. } => Some(channel),
            _ => None,
        })
        .await;
        let (answered, result) = next_event(&mut a.events, |e| match e {
            NetworkEvent::Response {
                request, result, ..
            } => Some((request, result)),
            _ => None,
        })
        .await;
        assert_eq!(answered, token);
        assert_eq!(result, Err(RequestFailure::Timeout));
        assert!(started.elapsed() >= Duration::from_millis(800));
        assert_eq!(read_counter(&a.handle.stats().request_failures), 1);

        // A request to a peer we cannot reach fails as a dial failure, not a hang.
        let stranger = basalt_p2p::peer_id_from_seed(seed(43));
        let token = a
            .handle
            .request(stranger, SyncRequest::Status)
            .await
            .unwrap();
        let (answered, result) = next_event(&mut a.events, |e| match e {
            NetworkEvent::Response {
                request, result, ..
            } => Some((request, result)),
            _ => None,
        })
        .await;
        assert_eq!(answered, token);
        assert_eq!(result, Err(RequestFailure::DialFailure));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_with_rejected_messages_is_disconnected_and_banned() {
    bounded(async {
        let mut b = start(51, vec![]).await;
        let a = start(52, vec![b.address.clone()]).await;
        wait_until("connected", || b.handle.connected_peers() == 1).await;
        wait_subscribed(&a, Topic::Consensus, 1).await;

        let threshold = basalt_p2p::INVALID_MESSAGES_BEFORE_DISCONNECT_DEFAULT;
        for i in 0..threshold * 2 {
            a.handle
                .publish(Topic::Consensus, format!("garbage-{i}").into_bytes())
                .await
                .unwrap();
        }
        let mut rejected = 0u32;
        let disconnected = next_event(&mut b.events, |e| match e {
            NetworkEvent::Gossip { from, id, .. } => {
                b.handle.try_validate(id, from, Verdict::Reject).unwrap();
                rejected += 1;
                None
            }
            NetworkEvent::PeerDisconnected(peer) => Some(peer),
            _ => None,
        })
        .await;
        assert_eq!(disconnected, a.id());
        // Messages already queued to the node keep arriving after the ban; the exact count
        // is unit-tested in `peers`.
        assert!(rejected > threshold, "banned after only {rejected} rejects");
        let stats = b.handle.stats();
        wait_until("ban counted", || read_counter(&stats.peers_banned) == 1).await;
        assert_eq!(read_counter(&stats.banned_peers), 1);

        // a keeps re-dialing (b is its static peer); b refuses it for the whole ban.
        let dials_before = read_counter(&a.handle.stats().static_peer_dials);
        let reconnect_window = Duration::from_secs(3);
        assert!(
            no_event(&mut b.events, reconnect_window, |e| matches!(
                e,
                NetworkEvent::PeerConnected(_)
            ))
            .await,
            "banned peer reconnected"
        );
        assert_eq!(b.handle.connected_peers(), 0);
        assert!(
            read_counter(&a.handle.stats().static_peer_dials) >= dials_before + 2,
            "a should have tried to re-dial during the window"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_peer_is_redialed_after_restart() {
    bounded(async {
        let b = start(61, vec![]).await;
        let b_address = b.address.clone();
        let mut a = start(62, vec![b_address.clone()]).await;
        let b_id = b.id();
        let connected = next_event(&mut a.events, |e| match e {
            NetworkEvent::PeerConnected(peer) => Some(peer),
            _ => None,
        })
        .await;
        assert_eq!(connected, b_id);

        b.handle.shutdown().await;
        drop(b);
        let gone = next_event(&mut a.events, |e| match e {
            NetworkEvent::PeerDisconnected(peer) => Some(peer),
            _ => None,
        })
        .await;
        assert_eq!(gone, b_id);

        // Same key, same port.
        let listen: Multiaddr = b_address
            .iter()
            .filter(|p| !matches!(p, Protocol::P2p(_)))
            .collect();
        let started = Instant::now();
        let mut b = loop {
            match spawn(P2pConfig::new(seed(61), listen.clone())) {
                Ok((handle, events)) => break (handle, events),
                Err(error) => {
                    assert!(started.elapsed() < DEADLINE, "cannot rebind: {error}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        let back = next_event(&mut a.events, |e| match e {
            NetworkEvent::PeerConnected(peer) => Some(peer),
            _ => None,
        })
        .await;
        assert_eq!(back, b_id);
        let seen = next_event(&mut b.1, |e| match e {
            NetworkEvent::PeerConnected(peer) => Some(peer),
            _ => None,
        })
        .await;
        assert_eq!(seen, a.id());
        println!("re-dial after restart took {:?}", started.elapsed());
    })
    .await;
}

/// Reproducible pseudo-random bytes (xorshift64).
fn noise_bytes(state: &mut u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|_| {
            *state ^= *state << 13;
            *state ^= *state >> 7;
            *state ^= *state << 17;
            (*state >> 24) as u8
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_socket_does_not_hurt() {
    bounded(async {
        let mut b = start(71, vec![]).await;
        let a = start(72, vec![b.address.clone()]).await;
        wait_until("connected", || b.handle.connected_peers() == 1).await;

        let tcp_address = b
            .address
            .iter()
            .find_map(|p| match p {
                Protocol::Tcp(port) => Some(port),
                _ => None,
            })
            .unwrap();
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        for round in 0..16 {
            let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", tcp_address)).await
            else {
                continue;
            };
            let mut bytes = Vec::new();
            if round % 2 == 1 {
                // Get past multistream-select's first line, then garbage.
                bytes.extend_from_slice(b"\x13/multistream/1.0.0\n\x07/noise\n");
            }
            bytes.extend(noise_bytes(&mut state, 64 * 1024));
            // The node may close on us mid-write; that is its right.
            let _ = stream.write_all(&bytes).await;
            let _ = stream.shutdown().await;
        }
        let stats = b.handle.stats();
        wait_until("handshake failures counted", || {
            read_counter(&stats.inbound_handshake_failures) >= 1
        })
        .await;

        // Still gossiping.
        wait_subscribed(&a, Topic::Consensus, 1).await;
        a.handle
            .publish(Topic::Consensus, b"still-alive".to_vec())
            .await
            .unwrap();
        let (from, topic, data, _) = next_event(&mut b.events, gossip).await;
        assert_eq!(
            (from, topic, data.as_slice()),
            (a.id(), Topic::Consensus, &b"still-alive"[..])
        );
        assert_eq!(b.handle.connected_peers(), 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_stops_when_handles_are_dropped() {
    bounded(async {
        let node = start(81, vec![]).await;
        let mut connected = node.handle.connected_peers_watch();
        let Node { handle, events, .. } = node;
        drop(handle);
        timeout(DEADLINE, async {
            while connected.changed().await.is_ok() {}
        })
        .await
        .expect("service did not stop");
        drop(events);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_event_queue_sheds_gossip_and_refuses_requests() {
    bounded(async {
        use basalt_p2p::{EVENT_QUEUE_CAPACITY, TXS_QUEUE_SHARE_PERCENT};
        let txs_share = EVENT_QUEUE_CAPACITY * TXS_QUEUE_SHARE_PERCENT / 100;
        // b never reads its events until the end.
        let mut b = start(91, vec![]).await;
        let mut a = start(92, vec![b.address.clone()]).await;
        // Take the PeerConnected event so the queue starts empty.
        next_event(&mut b.events, |e| match e {
            NetworkEvent::PeerConnected(peer) => Some(peer),
            _ => None,
        })
        .await;
        wait_subscribed(&a, Topic::Txs, 1).await;
        wait_subscribed(&a, Topic::Consensus, 1).await;
        let b_stats = b.handle.stats();

        // A transaction flood fills only its share of the queue.
        let txs_sent = txs_share + 200;
        for i in 0..txs_sent {
            a.handle
                .publish(Topic::Txs, format!("tx-{i}").into_bytes())
                .await
                .unwrap();
        }
        wait_until("tx flood received", || {
            read_counter(&b_stats.txs.received) == txs_sent as u64
        })
        .await;
        assert_eq!(read_counter(&b_stats.txs.dropped_queue_full), 200);

        // Consensus messages still get in, up to the full capacity.
        let consensus_room = EVENT_QUEUE_CAPACITY - txs_share;
        let consensus_sent = consensus_room + 50;
        for i in 0..consensus_sent {
            a.handle
                .publish(Topic::Consensus, format!("vote-{i}").into_bytes())
                .await
                .unwrap();
        }
        wait_until("votes received", || {
            read_counter(&b_stats.consensus.received) == consensus_sent as u64
        })
        .await;
        assert_eq!(read_counter(&b_stats.consensus.dropped_queue_full), 50);
        assert_eq!(b.handle.event_queue_depth(), EVENT_QUEUE_CAPACITY);

        // A request finds the queue full and is refused at once.
        let token = a.handle.request(b.id(), SyncRequest::Status).await.unwrap();
        let (answered, result) = next_event(&mut a.events, |e| match e {
            NetworkEvent::Response {
                request, result, ..
            } => Some((request, result)),
            _ => None,
        })
        .await;
        assert_eq!((answered, result), (token, Ok(SyncResponse::Refused)));
        assert_eq!(read_counter(&b_stats.requests_inbound_refused), 1);

        // What was queued is intact and in order: the tx share first, then votes.
        let mut txs = 0;
        let mut votes = 0;
        while let Ok(event) = b.events.try_recv() {
            if let NetworkEvent::Gossip { topic, .. } = event {
                match topic {
                    Topic::Txs => {
                        assert_eq!(votes, 0, "votes arrived before earlier txs");
                        txs += 1;
                    }
                    Topic::Consensus => votes += 1,
                }
            }
        }
        assert_eq!((txs, votes), (txs_share, consensus_room));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_gossip_is_refused_both_ways() {
    bounded(async {
        let mut config = P2pConfig::new(seed(101), "/ip4/127.0.0.1/tcp/0".parse().unwrap());
        config.max_gossip_bytes = 1000;
        let mut b = start_with(config).await;
        let mut config = P2pConfig::new(seed(102), "/ip4/127.0.0.1/tcp/0".parse().unwrap());
        config.peers = vec![b.address.clone()];
        config.max_gossip_bytes = 100_000;
        let a = start_with(config).await;
        wait_until("connected", || b.handle.connected_peers() == 1).await;
        wait_subscribed(&a, Topic::Consensus, 1).await;
        wait_subscribed(&b, Topic::Consensus, 1).await;

        // b will not publish above its own limit.
        b.handle
            .publish(Topic::Consensus, vec![1; 1001])
            .await
            .unwrap();
        wait_until("publish refused", || {
            read_counter(&b.handle.stats().consensus.publish_failed) == 1
        })
        .await;

        // a may, but b rejects it on arrival without bothering the node.
        a.handle
            .publish(Topic::Consensus, vec![2; 5000])
            .await
            .unwrap();
        let stats = b.handle.stats();
        wait_until("oversize rejected", || {
            read_counter(&stats.gossip_rejected) == 1
        })
        .await;
        assert_eq!(read_counter(&stats.invalid_messages), 1);
        assert!(
            no_event(&mut b.events, QUIET_WINDOW, |e| matches!(
                e,
                NetworkEvent::Gossip { .. }
            ))
            .await
        );
    })
    .await;
}

/// A request-response codec that sends whatever bytes it is given, for speaking garbage on
/// the sync protocol.
#[derive(Debug, Clone, Default)]
struct RawCodec;

impl libp2p::request_response::Codec for RawCodec {
    type Protocol = libp2p::StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T>(&mut self, _: &Self::Protocol, io: &mut T) -> std::io::Result<Vec<u8>>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        let mut bytes = Vec::new();
        futures::AsyncReadExt::read_to_end(io, &mut bytes).await?;
        Ok(bytes)
    }

    async fn read_response<T>(
        &mut self,
        protocol: &Self::Protocol,
        io: &mut T,
    ) -> std::io::Result<Vec<u8>>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        self.read_request(protocol, io).await
    }

    async fn write_request<T>(
        &mut self,
        _: &Self::Protocol,
        io: &mut T,
        request: Vec<u8>,
    ) -> std::io::Result<()>
    where
        T: futures::AsyncWrite + Unpin + Send,
    {
        futures::AsyncWriteExt::write_all(io, &request).await
    }

    async fn write_response<T>(
        &mut self,
        protocol: &Self::Protocol,
        io: &mut T,
        response: Vec<u8>,
    ) -> std::io::Result<()>
    where
        T: futures::AsyncWrite + Unpin + Send,
    {
        self.write_request(protocol, io, response).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_sync_requests_get_the_sender_banned() {
    use futures::StreamExt;
    use libp2p::request_response::{self, ProtocolSupport};
    use libp2p::swarm::SwarmEvent;

    bounded(async {
        let b = start(111, vec![]).await;
        let behaviour = request_response::Behaviour::<RawCodec>::new(
            [(basalt_p2p::SYNC_PROTOCOL, ProtocolSupport::Full)],
            request_response::Config::default(),
        );
        let mut rogue = libp2p::SwarmBuilder::with_new_identity()
            .with_tokio()
            .with_tcp(
                libp2p::tcp::Config::default(),
                libp2p::noise::Config::new,
                libp2p::yamux::Config::default,
            )
            .unwrap()
            .with_behaviour(|_| behaviour)
            .unwrap()
            // Keep the connection open on our side: only b's ban may close it.
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
            .build();
        rogue.dial(b.address.clone()).unwrap();

        let threshold = basalt_p2p::INVALID_MESSAGES_BEFORE_DISCONNECT_DEFAULT;
        let closed = timeout(DEADLINE, async {
            loop {
                match rogue.select_next_some().await {
                    SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                        // A frame of 3 bytes that are no request, a frame longer than the
                        // maximum, and plain noise.
                        for i in 0..=threshold {
                            let garbage = match i % 3 {
                                0 => vec![3, 0, 0, 0, 9, 9, 9],
                                1 => vec![0xff, 0xff, 0xff, 0x7f, 1, 2, 3],
                                _ => vec![2, 0, 0, 0, 0xde, 0xad],
                            };
                            rogue.behaviour_mut().send_request(&peer_id, garbage);
                        }
                    }
                    SwarmEvent::ConnectionClosed {
                        num_established: 0, ..
                    } => return true,
                    _ => {}
                }
            }
        })
        .await
        .expect("rogue peer was not disconnected");
        assert!(closed);
        let stats = b.handle.stats();
        assert!(read_counter(&stats.invalid_messages) > u64::from(threshold));
        assert_eq!(read_counter(&stats.peers_banned), 1);
        // And it cannot come back.
        rogue.dial(b.address.clone()).unwrap();
        let refused = timeout(DEADLINE, async {
            loop {
                match rogue.select_next_some().await {
                    SwarmEvent::OutgoingConnectionError { .. } => return true,
                    SwarmEvent::ConnectionClosed { .. } => return true,
                    SwarmEvent::Behaviour(request_response::Event::Message { .. }) => return false,
                    _ => {}
                }
            }
        })
        .await
        .expect("no outcome for the re-dial");
        assert!(refused);
        assert_eq!(b.handle.connected_peers(), 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn largest_gossip_payload_is_delivered() {
    bounded(async {
        let mut b = start(121, vec![]).await;
        let a = start(122, vec![b.address.clone()]).await;
        wait_until("connected", || b.handle.connected_peers() == 1).await;
        wait_subscribed(&a, Topic::Consensus, 1).await;
        let payload: Vec<u8> = (0..basalt_p2p::GOSSIP_BYTES_MAX_DEFAULT)
            .map(|i| (i % 251) as u8)
            .collect();
        let started = Instant::now();
        a.handle
            .publish(Topic::Consensus, payload.clone())
            .await
            .unwrap();
        let (from, topic, data, _) = next_event(&mut b.events, gossip).await;
        println!(
            "{} byte gossip delivered in {:?}",
            data.len(),
            started.elapsed()
        );
        assert_eq!((from, topic), (a.id(), Topic::Consensus));
        assert!(data == payload, "payload altered in transit");
        assert_eq!(read_counter(&a.handle.stats().consensus.publish_failed), 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlisted_peers_share_one_consensus_budget_listed_peers_do_not() {
    bounded(async {
        let config = |seed_byte: u8, peers: Vec<Multiaddr>| {
            let mut config =
                P2pConfig::new(seed(seed_byte), "/ip4/127.0.0.1/tcp/0".parse().unwrap());
            config.peers = peers;
            config.consensus_messages_per_peer_per_sec = 0;
            config.consensus_messages_from_unlisted_per_sec = 100; // bursts of 200
            config
        };
        // b does not list a; c does.
        let b = start_with(config(111, vec![])).await;
        let a = start(112, vec![b.address.clone()]).await;
        let c = start_with(config(113, vec![a.address.clone()])).await;
        wait_subscribed(&a, Topic::Consensus, 2).await;
        let sent = 1000u64;
        for i in 0..sent {
            a.handle
                .publish(Topic::Consensus, format!("vote-{i}").into_bytes())
                .await
                .unwrap();
        }
        let (b_stats, c_stats) = (b.handle.stats(), c.handle.stats());
        wait_until("votes received", || {
            read_counter(&b_stats.consensus.received) == sent
                && read_counter(&c_stats.consensus.received) == sent
        })
        .await;
        let limited = read_counter(&b_stats.consensus.rate_limited);
        assert!(
            limited >= 500,
            "an unlisted peer got {} of {sent} through a budget of 100/s",
            sent - limited
        );
        assert_eq!(read_counter(&c_stats.consensus.rate_limited), 0);
    })
    .await;
}
