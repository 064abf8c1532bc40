//! The networking task: owns the swarm, turns swarm events into [`NetworkEvent`]s and
//! [`NetworkCommand`]s into swarm calls. It only decodes and dispatches; every branch does a
//! bounded amount of work, and no network input can make it panic.

use std::collections::VecDeque;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use libp2p::gossipsub::{self, MessageAcceptance, PublishError};
use libp2p::request_response::{self, OutboundFailure};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, Swarm};
use tokio::sync::{mpsc, watch};
use tokio::time::MissedTickBehavior;

use crate::behaviour::{Behaviour, BehaviourEvent};
use crate::codec::{response_encoded_len, CodecError, RequestFrame, SYNC_RESPONSE_BYTES_MAX};
use crate::config::{
    CONTROL_OVERFLOW_MAX, EVENT_QUEUE_CAPACITY, MAINTENANCE_INTERVAL, TXS_QUEUE_SHARE_PERCENT,
};
use crate::message::{
    GossipId, NetworkCommand, NetworkEvent, RequestFailure, RequestToken, ResponseToken,
    SyncRequest, SyncResponse, Topic, Verdict,
};
use crate::peers::{Judgement, PeerGuard, PeerRates, SlowPeers, StaticPeers};
use crate::stats::{self, bump, P2pStats};

/// Transaction gossip is admitted only while the event queue holds fewer than this many
/// events.
const TXS_QUEUE_DEPTH_MAX: usize = EVENT_QUEUE_CAPACITY * TXS_QUEUE_SHARE_PERCENT / 100;

/// Which lane an event travels in when the event queue fills up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lane {
    /// Gossip and requests: dropped when the queue is full (transaction gossip earlier).
    Data(Option<Topic>),
    /// Peer events and responses: wait in the bounded side queue.
    Control,
}

/// The state of the networking task.
pub(crate) struct Service {
    pub(crate) swarm: Swarm<Behaviour>,
    pub(crate) max_gossip_bytes: usize,
    pub(crate) events: mpsc::Sender<NetworkEvent>,
    pub(crate) overflow: VecDeque<NetworkEvent>,
    pub(crate) commands: mpsc::Receiver<NetworkCommand>,
    pub(crate) stats: Arc<P2pStats>,
    pub(crate) connected: watch::Sender<usize>,
    pub(crate) listening: watch::Sender<Vec<Multiaddr>>,
    pub(crate) static_peers: StaticPeers,
    pub(crate) guard: PeerGuard,
    pub(crate) rates: PeerRates,
    /// Peers whose gossip send queue keeps overflowing.
    pub(crate) slow_peers: SlowPeers,
    /// The shared budget of every peer outside `static_peers` (one bucket, under our id).
    pub(crate) unlisted_rates: PeerRates,
    pub(crate) local_peer_id: PeerId,
}

impl Service {
    /// Run until every handle is dropped or a shutdown is asked for.
    pub(crate) async fn run(mut self) {
        let mut tick = tokio::time::interval(MAINTENANCE_INTERVAL);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                command = self.commands.recv() => {
                    let Some(command) = command else { break };
                    if self.on_command(command).is_break() {
                        break;
                    }
                }
                _ = tick.tick() => self.maintain(),
                // Owned permit: a borrowed one would pin `self` across the other handlers.
                // (The clone is two atomic operations per loop turn.)
                permit = self.events.clone().reserve_owned(), if !self.overflow.is_empty() => {
                    match permit {
                        Ok(permit) => {
                            if let Some(event) = self.overflow.pop_front() {
                                permit.send(event);
                            }
                        }
                        // The node dropped its receiver: nobody will read these.
                        Err(_) => self.overflow.clear(),
                    }
                }
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
            }
        }
        tracing::debug!(peer = %self.swarm.local_peer_id(), "p2p service stopped");
    }

    // ----- commands -------------------------------------------------------------------

    fn on_command(&mut self, command: NetworkCommand) -> ControlFlow<()> {
        match command {
            NetworkCommand::Publish { topic, data } => self.publish(topic, data),
            NetworkCommand::Validate { id, from, verdict } => self.validate(id, from, verdict),
            NetworkCommand::Request {
                peer,
                request,
                reply,
            } => self.request(peer, request, reply),
            NetworkCommand::Respond { channel, response } => self.respond(channel, response),
            NetworkCommand::Shutdown => return ControlFlow::Break(()),
        }
        ControlFlow::Continue(())
    }

    fn publish(&mut self, topic: Topic, data: Vec<u8>) {
        let counters = self.stats.topic(topic);
        if data.len() > self.max_gossip_bytes {
            bump(&counters.publish_failed);
            tracing::warn!(
                ?topic,
                bytes = data.len(),
                "publish refused: payload too large"
            );
            return;
        }
        match self
            .swarm
            .behaviour_mut()
            .gossipsub
            .publish(topic.hash(), data)
        {
            Ok(_) => bump(&counters.published),
            Err(PublishError::Duplicate) => bump(&counters.publish_duplicate),
            Err(error) => {
                bump(&counters.publish_failed);
                tracing::debug!(?topic, %error, "publish failed");
            }
        }
    }

    fn validate(&mut self, id: GossipId, from: PeerId, verdict: Verdict) {
        let acceptance = match verdict {
            Verdict::Accept => {
                bump(&self.stats.gossip_accepted);
                MessageAcceptance::Accept
            }
            // Gossipsub's `Ignore` drops the message without forwarding and without any
            // penalty; its id stays in the duplicate cache.
            Verdict::AcceptLocal => {
                bump(&self.stats.gossip_accepted);
                MessageAcceptance::Ignore
            }
            Verdict::Reject => {
                bump(&self.stats.gossip_rejected);
                MessageAcceptance::Reject
            }
            Verdict::Ignore => {
                bump(&self.stats.gossip_ignored);
                MessageAcceptance::Ignore
            }
        };
        // False when the message already left the cache (validated late); nothing to do.
        let _ = self
            .swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(&id.0, &from, acceptance);
        if verdict == Verdict::Reject {
            self.record_invalid(from);
        }
    }

    fn request(
        &mut self,
        peer: PeerId,
        request: SyncRequest,
        reply: tokio::sync::oneshot::Sender<RequestToken>,
    ) {
        let id = self
            .swarm
            .behaviour_mut()
            .sync
            .send_request(&peer, RequestFrame::Valid(request));
        bump(&self.stats.requests_outbound);
        // The caller may have stopped waiting for the token; the response still comes.
        let _ = reply.send(RequestToken(id));
    }

    fn respond(&mut self, token: ResponseToken, response: SyncResponse) {
        let response = if response_encoded_len(&response) > SYNC_RESPONSE_BYTES_MAX
            || matches!(&response, SyncResponse::Blocks(blocks)
                if blocks.len() > crate::codec::SYNC_BLOCKS_PER_RESPONSE_MAX)
        {
            bump(&self.stats.responses_oversize);
            tracing::warn!(peer = %token.peer, "sync response over the limits, sent Refused");
            SyncResponse::Refused
        } else {
            response
        };
        if self
            .swarm
            .behaviour_mut()
            .sync
            .send_response(token.channel, response)
            .is_err()
        {
            bump(&self.stats.responses_late);
        }
    }

    // ----- swarm events -----------------------------------------------------------------

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(event)) => self.on_gossip(event),
            SwarmEvent::Behaviour(BehaviourEvent::Sync(event)) => self.on_sync(event),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(event)) => {
                tracing::trace!(?event, "identify");
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                num_established,
                ..
            } => {
                if num_established.get() == 1 {
                    self.static_peers.on_connected(&peer_id, Instant::now());
                    self.emit(NetworkEvent::PeerConnected(peer_id), Lane::Control);
                }
                self.refresh_connected();
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established,
                cause,
                ..
            } => {
                if num_established == 0 {
                    tracing::debug!(peer = %peer_id, ?cause, "peer disconnected");
                    self.static_peers.on_disconnected(&peer_id, Instant::now());
                    self.rates.forget(&peer_id);
                    self.slow_peers.forget(&peer_id);
                    self.emit(NetworkEvent::PeerDisconnected(peer_id), Lane::Control);
                }
                self.refresh_connected();
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                tracing::debug!(?peer_id, %error, "dial failed");
                if let Some(peer) = peer_id {
                    self.static_peers.on_dial_failed(&peer, Instant::now());
                }
            }
            SwarmEvent::IncomingConnectionError {
                send_back_addr,
                error,
                ..
            } => {
                bump(&self.stats.inbound_handshake_failures);
                tracing::debug!(from = %send_back_addr, %error, "inbound handshake failed");
            }
            SwarmEvent::NewListenAddr { address, .. } => {
                self.listening.send_modify(|addresses| {
                    if !addresses.contains(&address) {
                        addresses.push(address);
                    }
                });
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                self.listening
                    .send_modify(|addresses| addresses.retain(|a| a != &address));
            }
            SwarmEvent::ListenerClosed {
                addresses, reason, ..
            } => {
                tracing::warn!(?addresses, ?reason, "listener closed");
                self.listening
                    .send_modify(|current| current.retain(|a| !addresses.contains(a)));
            }
            SwarmEvent::ListenerError { error, .. } => {
                tracing::warn!(%error, "listener error");
            }
            _ => {}
        }
    }

    fn on_gossip(&mut self, event: gossipsub::Event) {
        match event {
            gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            } => self.on_gossip_message(propagation_source, message_id, message),
            gossipsub::Event::GossipsubNotSupported { peer_id } => {
                tracing::debug!(peer = %peer_id, "peer does not speak gossipsub");
            }
            gossipsub::Event::SlowPeer {
                peer_id,
                failed_messages,
            } => {
                tracing::debug!(peer = %peer_id, ?failed_messages, "slow gossip peer");
                let dropped = failed_messages
                    .priority
                    .saturating_add(failed_messages.non_priority);
                self.stats.gossip_slow_peer_dropped.fetch_add(
                    u64::try_from(dropped).unwrap_or(u64::MAX),
                    std::sync::atomic::Ordering::Relaxed,
                );
                if dropped > 0 && self.slow_peers.report(peer_id, Instant::now()) {
                    tracing::warn!(
                        peer = %peer_id,
                        after = ?crate::config::SLOW_PEER_DISCONNECT_AFTER,
                        "gossip to this peer kept overflowing: disconnecting (a static peer is re-dialed)"
                    );
                    bump(&self.stats.slow_peer_disconnects);
                    let _ = self.swarm.disconnect_peer_id(peer_id);
                }
            }
            other => tracing::trace!(?other, "gossipsub"),
        }
    }

    /// A peer's own rate, and for a peer outside the configured list also the budget all
    /// such peers share.
    fn admit_consensus(&mut self, from: PeerId) -> bool {
        let now = Instant::now();
        self.rates.admit(from, now)
            && (self.static_peers.contains(&from)
                || self.unlisted_rates.admit(self.local_peer_id, now))
    }

    fn on_gossip_message(
        &mut self,
        from: PeerId,
        message_id: gossipsub::MessageId,
        message: gossipsub::Message,
    ) {
        let Some(topic) = Topic::from_hash(&message.topic) else {
            self.report(&message_id, &from, MessageAcceptance::Ignore);
            return;
        };
        bump(&self.stats.topic(topic).received);
        if topic == Topic::Consensus && !self.admit_consensus(from) {
            bump(&self.stats.topic(topic).rate_limited);
            self.report(&message_id, &from, MessageAcceptance::Ignore);
            return;
        }
        if message.data.len() > self.max_gossip_bytes {
            bump(&self.stats.gossip_rejected);
            self.report(&message_id, &from, MessageAcceptance::Reject);
            self.record_invalid(from);
            return;
        }
        let event = NetworkEvent::Gossip {
            from,
            topic,
            data: message.data,
            id: GossipId(message_id.clone()),
        };
        if self.emit(event, Lane::Data(Some(topic))).is_some() {
            // Report it, or gossipsub would hold it until the cache expires.
            bump(&self.stats.topic(topic).dropped_queue_full);
            self.report(&message_id, &from, MessageAcceptance::Ignore);
        }
    }

    fn report(&mut self, id: &gossipsub::MessageId, from: &PeerId, acceptance: MessageAcceptance) {
        let _ = self
            .swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(id, from, acceptance);
    }

    fn on_sync(&mut self, event: request_response::Event<RequestFrame, SyncResponse>) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request: RequestFrame::Valid(request),
                    channel,
                    ..
                } => self.on_inbound_request(peer, request, channel),
                request_response::Message::Request {
                    request: RequestFrame::Invalid(error),
                    ..
                } => {
                    // Not answered: dropping the channel closes the stream (and is counted
                    // as an inbound failure, "response omission").
                    tracing::debug!(%peer, %error, "undecodable sync request");
                    self.record_invalid(peer);
                }
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    self.emit(
                        NetworkEvent::Response {
                            from: peer,
                            request: RequestToken(request_id),
                            result: Ok(response),
                        },
                        Lane::Control,
                    );
                }
            },
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                bump(&self.stats.request_failures);
                if let OutboundFailure::Io(io_error) = &error {
                    if CodecError::from_io(io_error).is_some_and(CodecError::is_peer_fault) {
                        self.record_invalid(peer);
                    }
                }
                tracing::debug!(%peer, %error, "sync request failed");
                self.emit(
                    NetworkEvent::Response {
                        from: peer,
                        request: RequestToken(request_id),
                        result: Err(request_failure(error)),
                    },
                    Lane::Control,
                );
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                bump(&self.stats.requests_inbound_failed);
                if let request_response::InboundFailure::Io(io_error) = &error {
                    if CodecError::from_io(io_error).is_some_and(CodecError::is_peer_fault) {
                        self.record_invalid(peer);
                    }
                }
                tracing::debug!(%peer, %error, "inbound sync request failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn on_inbound_request(
        &mut self,
        from: PeerId,
        request: SyncRequest,
        channel: request_response::ResponseChannel<SyncResponse>,
    ) {
        bump(&self.stats.requests_inbound);
        let event = NetworkEvent::Request {
            from,
            request,
            channel: ResponseToken {
                channel,
                peer: from,
            },
        };
        if let Some(NetworkEvent::Request { channel, .. }) = self.emit(event, Lane::Data(None)) {
            bump(&self.stats.requests_inbound_refused);
            let _ = self
                .swarm
                .behaviour_mut()
                .sync
                .send_response(channel.channel, SyncResponse::Refused);
        }
    }

    // ----- event queue ------------------------------------------------------------------

    /// Queue `event` for the node. Returns it when it was not queued (data lane, queue full
    /// or node gone); control events never come back (they are queued aside or counted).
    fn emit(&mut self, event: NetworkEvent, lane: Lane) -> Option<NetworkEvent> {
        match lane {
            Lane::Data(topic) => {
                // Keep order behind waiting control events, and leave room for consensus.
                let depth = self.events.max_capacity() - self.events.capacity();
                if !self.overflow.is_empty()
                    || (topic == Some(Topic::Txs) && depth >= TXS_QUEUE_DEPTH_MAX)
                {
                    return Some(event);
                }
                self.events.try_send(event).err().map(|error| match error {
                    mpsc::error::TrySendError::Full(event)
                    | mpsc::error::TrySendError::Closed(event) => event,
                })
            }
            Lane::Control => {
                if self.overflow.is_empty() {
                    match self.events.try_send(event) {
                        Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => return None,
                        Err(mpsc::error::TrySendError::Full(event)) => {
                            self.overflow.push_back(event);
                            return None;
                        }
                    }
                }
                if self.overflow.len() < CONTROL_OVERFLOW_MAX {
                    self.overflow.push_back(event);
                } else {
                    bump(&self.stats.events_dropped);
                }
                None
            }
        }
    }

    // ----- peers ------------------------------------------------------------------------

    fn record_invalid(&mut self, peer: PeerId) {
        bump(&self.stats.invalid_messages);
        let Judgement::Ban { until, lifted } = self.guard.record_invalid(peer, Instant::now())
        else {
            return;
        };
        let block_list = &mut self.swarm.behaviour_mut().block_list;
        if let Some(lifted) = lifted {
            block_list.unblock_peer(lifted);
        }
        // Closes every connection to it and refuses new ones until the ban ends.
        block_list.block_peer(peer);
        self.static_peers.defer(&peer, until);
        bump(&self.stats.peers_banned);
        stats::set(&self.stats.banned_peers, self.guard.banned());
        tracing::warn!(%peer, "too many invalid messages: disconnected and banned");
    }

    fn maintain(&mut self) {
        let now = Instant::now();
        for peer in self.guard.expire(now) {
            self.swarm.behaviour_mut().block_list.unblock_peer(peer);
            tracing::info!(%peer, "ban ended");
        }
        for (peer, address) in self.static_peers.due(now) {
            if self.guard.is_banned(&peer) {
                self.static_peers.on_dial_failed(&peer, now);
                continue;
            }
            bump(&self.stats.static_peer_dials);
            let dial = DialOpts::peer_id(peer)
                .addresses(vec![address])
                .condition(PeerCondition::DisconnectedAndNotDialing)
                .build();
            if let Err(error) = self.swarm.dial(dial) {
                tracing::debug!(%peer, %error, "static peer dial not started");
                self.static_peers.on_dial_failed(&peer, now);
            }
        }
        self.refresh_gauges();
    }

    fn refresh_connected(&mut self) {
        let count = self.swarm.connected_peers().count();
        stats::set(&self.stats.connected_peers, count);
        self.connected.send_replace(count);
    }

    fn refresh_gauges(&mut self) {
        let gossipsub = &self.swarm.behaviour().gossipsub;
        for topic in Topic::ALL {
            let hash = topic.hash();
            let (mut subscribed, mut subscribed_static) = (0, 0);
            let now = Instant::now();
            let publish_threshold = gossipsub::PeerScoreThresholds::default().publish_threshold;
            for (peer, topics) in gossipsub.all_peers() {
                if topics.contains(&&hash) {
                    subscribed += 1;
                    // Counted only if a publish reaches it: flood publishing skips a peer
                    // scored below the publish threshold, and drops what overflows a slow
                    // peer's queue.
                    let reached = gossipsub
                        .peer_score(peer)
                        .is_none_or(|score| score >= publish_threshold)
                        && !self.slow_peers.is_slow(peer, now);
                    if reached && self.static_peers.contains(peer) {
                        subscribed_static += 1;
                    }
                }
            }
            let mesh = gossipsub.mesh_peers(&hash).count();
            let counters = self.stats.topic(topic);
            stats::set(&counters.subscribed_peers, subscribed);
            stats::set(&counters.subscribed_static_peers, subscribed_static);
            stats::set(&counters.mesh_peers, mesh);
        }
        stats::set(&self.stats.static_peers, self.static_peers.len());
        stats::set(&self.stats.banned_peers, self.guard.banned());
    }
}

fn request_failure(error: OutboundFailure) -> RequestFailure {
    match error {
        OutboundFailure::DialFailure => RequestFailure::DialFailure,
        OutboundFailure::Timeout => RequestFailure::Timeout,
        OutboundFailure::ConnectionClosed => RequestFailure::ConnectionClosed,
        OutboundFailure::UnsupportedProtocols => RequestFailure::UnsupportedProtocol,
        OutboundFailure::Io(error) => match CodecError::from_io(&error) {
            Some(codec) => RequestFailure::InvalidResponse(codec.to_string()),
            None => RequestFailure::Io(error.to_string()),
        },
    }
}
