//! The flooder's connection to its target: a libp2p identity that speaks gossipsub's wire
//! format itself. It opens one gossipsub stream to the target and writes RPC frames that
//! each carry many published messages, as the protocol allows and an attacker would: going
//! through a full gossipsub behaviour costs the flooder ~0.7 of this machine's 2 cores at
//! ~10,000 messages a second actually delivered (one RPC per message, each cached, hashed
//! and encrypted on its own), CPU that the validators it attacks then lack.
//!
//! The target's own gossipsub stream to the flooder is accepted and read to the end
//! unparsed, so the target keeps its gossipsub handler enabled for the connection.

use anyhow::{anyhow, Context, Result};
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::multiaddr::Protocol;
use libp2p::swarm::SwarmEvent;
use libp2p::{identity, Multiaddr, PeerId, StreamProtocol};
use prost::Message as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// The gossipsub protocol version the flooder speaks (every libp2p gossipsub accepts it).
const GOSSIPSUB_PROTOCOL: StreamProtocol = StreamProtocol::new("/meshsub/1.1.0");
/// Frames waiting for the writer, per identity; beyond, the flood is backpressured.
const FRAMES_QUEUED_MAX: usize = 16;
/// How long a fresh identity may take to connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How much of the target's stream is read at a time (and thrown away).
const DRAIN_CHUNK: usize = 16 * 1024;

/// gossipsub's `RPC` message (rpc.proto), only the parts the flooder writes.
#[derive(Clone, PartialEq, prost::Message)]
struct Rpc {
    #[prost(message, repeated, tag = "1")]
    subscriptions: Vec<Subscription>,
    #[prost(message, repeated, tag = "2")]
    publish: Vec<Published>,
}

/// gossipsub's `SubOpts`.
#[derive(Clone, PartialEq, prost::Message)]
struct Subscription {
    #[prost(bool, tag = "1")]
    subscribe: bool,
    #[prost(string, tag = "2")]
    topic: String,
}

/// gossipsub's `Message`, anonymous: no author, sequence number, signature or key (the
/// target runs gossipsub in anonymous mode and refuses messages that carry them).
#[derive(Clone, PartialEq, prost::Message)]
struct Published {
    #[prost(bytes = "vec", tag = "2")]
    data: Vec<u8>,
    #[prost(string, tag = "4")]
    topic: String,
}

/// One length-delimited gossipsub RPC frame publishing every payload on `topic`.
pub fn rpc_frame(topic: &str, payloads: Vec<Vec<u8>>) -> Vec<u8> {
    Rpc {
        subscriptions: Vec::new(),
        publish: payloads
            .into_iter()
            .map(|data| Published {
                data,
                topic: topic.to_owned(),
            })
            .collect(),
    }
    .encode_length_delimited_to_vec()
}

/// A frame subscribing to `topic`: the target then sends the flooder what it publishes
/// there, as to any subscriber (an attacker that subscribes costs it that too).
fn subscribe_frame(topic: &str) -> Vec<u8> {
    Rpc {
        subscriptions: vec![Subscription {
            subscribe: true,
            topic: topic.to_owned(),
        }],
        publish: Vec::new(),
    }
    .encode_length_delimited_to_vec()
}

/// What one identity's writer did.
#[derive(Default)]
struct Counters {
    /// Messages written to the target's stream.
    written: AtomicU64,
    /// Messages in frames whose write failed.
    failed: AtomicU64,
    /// The connection is gone (closed, refused, banned) or the stream failed.
    closed: AtomicBool,
}

/// A connected flooder identity.
pub struct Identity {
    frames: mpsc::Sender<(Vec<u8>, u64)>,
    counters: Arc<Counters>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

fn target_peer(target: &Multiaddr) -> Result<PeerId> {
    target
        .iter()
        .find_map(|protocol| match protocol {
            Protocol::P2p(peer) => Some(peer),
            _ => None,
        })
        .ok_or_else(|| anyhow!("{target} does not end in /p2p/<peer id>"))
}

impl Identity {
    /// Connect to `target` as the identity derived from `seed`, subscribed to `topic`.
    pub async fn connect(target: &Multiaddr, seed: [u8; 32], topic: &str) -> Result<Identity> {
        let peer = target_peer(target)?;
        let keypair = identity::Keypair::ed25519_from_bytes(seed).context("flooder key")?;
        let mut swarm = basalt_p2p::tcp_swarm(keypair, libp2p_stream::Behaviour::new())
            .context("flooder transport")?;
        let mut control = swarm.behaviour().new_control();
        let mut incoming = control
            .accept(GOSSIPSUB_PROTOCOL)
            .map_err(|e| anyhow!("flooder accept: {e}"))?;
        swarm.dial(target.clone()).context("flooder dial")?;
        let counters = Arc::new(Counters::default());
        let (connected_tx, mut connected) = tokio::sync::watch::channel(false);
        let swarm_counters = counters.clone();
        let driver = tokio::spawn(async move {
            while let Some(event) = swarm.next().await {
                match event {
                    SwarmEvent::ConnectionEstablished { peer_id, .. } if peer_id == peer => {
                        let _ = connected_tx.send(true);
                    }
                    SwarmEvent::ConnectionClosed {
                        peer_id,
                        num_established: 0,
                        ..
                    } if peer_id == peer => break,
                    SwarmEvent::OutgoingConnectionError { .. } => break,
                    _ => {}
                }
            }
            swarm_counters.closed.store(true, Ordering::Relaxed);
        });
        // The target's stream to us: read and dropped.
        let drain = tokio::spawn(async move {
            while let Some((_, mut stream)) = incoming.next().await {
                tokio::spawn(async move {
                    let mut chunk = vec![0u8; DRAIN_CHUNK];
                    while matches!(stream.read(&mut chunk).await, Ok(n) if n > 0) {}
                });
            }
        });
        let deadline = Instant::now() + CONNECT_TIMEOUT;
        while !*connected.borrow() {
            if counters.closed.load(Ordering::Relaxed) {
                driver.abort();
                drain.abort();
                anyhow::bail!("flooder could not connect to {target}");
            }
            let wait = deadline.saturating_duration_since(Instant::now());
            if wait.is_zero()
                || tokio::time::timeout(wait, connected.changed())
                    .await
                    .is_err()
            {
                driver.abort();
                drain.abort();
                anyhow::bail!("flooder could not connect to {target} within {CONNECT_TIMEOUT:?}");
            }
        }
        let (frames, mut queued) = mpsc::channel::<(Vec<u8>, u64)>(FRAMES_QUEUED_MAX);
        let writer_counters = counters.clone();
        let subscribe = subscribe_frame(topic);
        let writer = tokio::spawn(async move {
            let counters = writer_counters;
            let mut stream = match control.open_stream(peer, GOSSIPSUB_PROTOCOL).await {
                Ok(stream) => stream,
                Err(error) => {
                    tracing::warn!(%error, "flooder could not open a gossipsub stream");
                    counters.closed.store(true, Ordering::Relaxed);
                    return;
                }
            };
            if stream.write_all(&subscribe).await.is_err() {
                counters.closed.store(true, Ordering::Relaxed);
                return;
            }
            while let Some((frame, messages)) = queued.recv().await {
                let written = async {
                    stream.write_all(&frame).await?;
                    stream.flush().await
                }
                .await;
                if written.is_err() {
                    counters.failed.fetch_add(messages, Ordering::Relaxed);
                    counters.closed.store(true, Ordering::Relaxed);
                    break;
                }
                counters.written.fetch_add(messages, Ordering::Relaxed);
            }
            let _ = stream.close().await;
        });
        Ok(Identity {
            frames,
            counters,
            tasks: vec![driver, drain, writer],
        })
    }

    /// Whether the target still has this identity connected.
    pub fn is_alive(&self) -> bool {
        !self.counters.closed.load(Ordering::Relaxed) && !self.frames.is_closed()
    }

    /// Whether a frame would be taken now.
    pub fn has_room(&self) -> bool {
        self.frames.capacity() > 0
    }

    /// Queue a frame of `messages` messages for writing; `false` if the queue is full.
    pub fn send(&self, frame: Vec<u8>, messages: u64) -> bool {
        self.frames.try_send((frame, messages)).is_ok()
    }

    /// Let the writer finish what it has (up to `grace`), then drop the connection.
    pub async fn shutdown(self, grace: Duration) -> (u64, u64) {
        let Identity {
            frames,
            counters,
            mut tasks,
        } = self;
        drop(frames);
        if let Some(writer) = tasks.pop() {
            let _ = tokio::time::timeout(grace, writer).await;
        }
        for task in tasks {
            task.abort();
        }
        (
            counters.written.load(Ordering::Relaxed),
            counters.failed.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use basalt_p2p::{NetworkEvent, P2pConfig, Topic};

    #[test]
    fn a_subscription_is_a_length_prefixed_rpc_of_sub_opts() {
        // length 7; subscriptions(1) {subscribe(1) true, topic_id(2) "t"}
        assert_eq!(subscribe_frame("t"), [7, 0x0a, 5, 0x08, 1, 0x12, 1, b't']);
    }

    #[test]
    fn a_frame_is_a_length_prefixed_rpc_of_anonymous_messages() {
        let frame = rpc_frame("t", vec![b"ab".to_vec(), b"c".to_vec()]);
        // length 17; publish(2) {data(2) "ab", topic(4) "t"}; publish(2) {data "c", topic "t"}
        let expected = [
            17, 0x12, 7, 0x12, 2, b'a', b'b', 0x22, 1, b't', 0x12, 6, 0x12, 1, b'c', 0x22, 1, b't',
        ];
        assert_eq!(frame, expected);
    }

    /// A real node's gossipsub takes every message of the flooder's frames as published.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_basalt_node_receives_every_message_of_a_frame() {
        let (node, mut events) = basalt_p2p::spawn(P2pConfig::new(
            [7; 32],
            "/ip4/127.0.0.1/tcp/0".parse().unwrap(),
        ))
        .unwrap();
        let mut listen = node.listen_addrs().await;
        for _ in 0..100 {
            if !listen.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            listen = node.listen_addrs().await;
        }
        let target = listen
            .first()
            .expect("node listens")
            .clone()
            .with(Protocol::P2p(node.peer_id()));
        let flooder = Identity::connect(&target, [9; 32], Topic::Consensus.name())
            .await
            .unwrap();
        let payloads: Vec<Vec<u8>> = (0u32..50).map(|i| i.to_le_bytes().repeat(8)).collect();
        for chunk in payloads.chunks(25) {
            assert!(flooder.send(rpc_frame(Topic::Consensus.name(), chunk.to_vec()), 25));
        }
        let mut received = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while received.len() < payloads.len() {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Some(NetworkEvent::Gossip { topic, data, .. })) => {
                    assert_eq!(topic, Topic::Consensus);
                    received.push(data);
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        assert_eq!(received, payloads);
        assert!(flooder.is_alive());
        assert_eq!(flooder.shutdown(Duration::from_secs(1)).await, (50, 0));
        node.shutdown().await;
    }
}
