//! The node's side of the networking task.

use std::sync::Arc;

use libp2p::{Multiaddr, PeerId};
use tokio::sync::{mpsc, oneshot, watch};

use crate::message::{
    GossipId, NetworkCommand, NetworkEvent, RequestToken, ResponseToken, SyncRequest, SyncResponse,
    Topic, Verdict,
};
use crate::stats::P2pStats;

/// Why a command did not reach the networking task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// The command channel is full (only from `try_*` calls).
    #[error("network command queue full")]
    Full,
    /// The networking task has stopped.
    #[error("network service stopped")]
    Stopped,
}

impl<T> From<mpsc::error::TrySendError<T>> for CommandError {
    fn from(error: mpsc::error::TrySendError<T>) -> Self {
        match error {
            mpsc::error::TrySendError::Full(_) => CommandError::Full,
            mpsc::error::TrySendError::Closed(_) => CommandError::Stopped,
        }
    }
}

impl<T> From<mpsc::error::SendError<T>> for CommandError {
    fn from(_: mpsc::error::SendError<T>) -> Self {
        CommandError::Stopped
    }
}

/// A cheap, cloneable handle to the networking task. The task stops when every handle (and
/// every clone of [`NetworkHandle::commands`]) is dropped, or on [`NetworkHandle::shutdown`].
#[derive(Debug, Clone)]
pub struct NetworkHandle {
    pub(crate) commands: mpsc::Sender<NetworkCommand>,
    pub(crate) peer_id: PeerId,
    pub(crate) connected: watch::Receiver<usize>,
    pub(crate) listening: watch::Receiver<Vec<Multiaddr>>,
    pub(crate) stats: Arc<P2pStats>,
    pub(crate) events: mpsc::WeakSender<NetworkEvent>,
}

impl NetworkHandle {
    /// Our libp2p identity.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// Number of peers with at least one open connection.
    pub fn connected_peers(&self) -> usize {
        *self.connected.borrow()
    }

    /// A watch of [`NetworkHandle::connected_peers`]; it closes when the task stops.
    pub fn connected_peers_watch(&self) -> watch::Receiver<usize> {
        self.connected.clone()
    }

    /// The addresses we listen on, waiting until there is at least one (a `/tcp/0` listen
    /// address is resolved to its port here). Empty if the task stopped before listening.
    pub async fn listen_addrs(&self) -> Vec<Multiaddr> {
        let mut listening = self.listening.clone();
        let ready = listening
            .wait_for(|addresses| !addresses.is_empty())
            .await
            .map(|addresses| addresses.clone());
        ready.unwrap_or_else(|_| listening.borrow().clone())
    }

    /// The command channel, for callers that want to send [`NetworkCommand`]s directly.
    pub fn commands(&self) -> &mpsc::Sender<NetworkCommand> {
        &self.commands
    }

    /// The counters of the networking task.
    pub fn stats(&self) -> &P2pStats {
        &self.stats
    }

    /// Events waiting in the node's event channel.
    pub fn event_queue_depth(&self) -> usize {
        self.events
            .upgrade()
            .map_or(0, |events| events.max_capacity() - events.capacity())
    }

    /// Commands waiting in the command channel.
    pub fn command_queue_depth(&self) -> usize {
        self.commands.max_capacity() - self.commands.capacity()
    }

    /// Publish without waiting; [`CommandError::Full`] when the command queue is full.
    pub fn try_publish(&self, topic: Topic, data: Vec<u8>) -> Result<(), CommandError> {
        Ok(self
            .commands
            .try_send(NetworkCommand::Publish { topic, data })?)
    }

    /// Publish, waiting for room in the command queue.
    pub async fn publish(&self, topic: Topic, data: Vec<u8>) -> Result<(), CommandError> {
        Ok(self
            .commands
            .send(NetworkCommand::Publish { topic, data })
            .await?)
    }

    /// Report a verdict without waiting.
    pub fn try_validate(
        &self,
        id: GossipId,
        from: PeerId,
        verdict: Verdict,
    ) -> Result<(), CommandError> {
        Ok(self
            .commands
            .try_send(NetworkCommand::Validate { id, from, verdict })?)
    }

    /// Report a verdict, waiting for room in the command queue.
    pub async fn validate(
        &self,
        id: GossipId,
        from: PeerId,
        verdict: Verdict,
    ) -> Result<(), CommandError> {
        Ok(self
            .commands
            .send(NetworkCommand::Validate { id, from, verdict })
            .await?)
    }

    /// Send a sync request; the answer arrives as a [`NetworkEvent::Response`] carrying the
    /// returned token.
    pub async fn request(
        &self,
        peer: PeerId,
        request: SyncRequest,
    ) -> Result<RequestToken, CommandError> {
        let (reply, token) = oneshot::channel();
        self.commands
            .send(NetworkCommand::Request {
                peer,
                request,
                reply,
            })
            .await?;
        token.await.map_err(|_| CommandError::Stopped)
    }

    /// Answer an inbound sync request.
    pub async fn respond(
        &self,
        channel: ResponseToken,
        response: SyncResponse,
    ) -> Result<(), CommandError> {
        Ok(self
            .commands
            .send(NetworkCommand::Respond { channel, response })
            .await?)
    }

    /// Stop the networking task and wait until it has stopped (its listener is closed and
    /// its connections are being torn down).
    pub async fn shutdown(&self) {
        // An error means it already stopped.
        let _ = self.commands.send(NetworkCommand::Shutdown).await;
        self.stopped().await;
    }

    /// Wait until the networking task has stopped.
    pub async fn stopped(&self) {
        let mut connected = self.connected.clone();
        while connected.changed().await.is_ok() {}
    }
}
