//! `gossip-flood`: seed 001's shape — a libp2p peer floods one validator with votes and
//! proposals for unknown blocks and future rounds, and junk. Not built yet: it lands with
//! the node's flood protections. When it does, this module implements
//! [`super::Workload`] (its `send` publishing through a libp2p swarm of its own) and
//! [`build`] returns it; nothing else in the lab changes.

use super::{Ctx, Workload};
use anyhow::{bail, Result};
use std::sync::Arc;

/// The gossip-flood workload (not built yet: an error saying so).
pub fn build(_ctx: &Ctx) -> Result<Arc<dyn Workload>> {
    bail!(
        "scenario gossip-flood is not built yet (it lands with the node's gossip flood \
         protections); available: transfer, orderbook, tasks, http-flood"
    )
}
