//! Basalt's deterministic simulator.
//!
//! Runs n validators of the real consensus core ([`basalt_consensus::Core`]) and the real
//! application ([`basalt_app::App`]) in one process, over a simulated network and a
//! simulated clock, both driven by one seeded RNG. Faults: per-message delay, loss,
//! duplication and reordering; partitions that heal; crashes and restarts from durable
//! state (decided chain, write-ahead log of consensus inputs, signing state); byzantine
//! validators (equivocating proposer and double voter, silent, twins).
//!
//! After each run, checkers report: safety (no two honest validators decide different
//! blocks at a height), state roots (every honest validator has the same root after every
//! height), liveness (once faults heal, every honest validator decides K more heights within
//! a bounded simulated time), and double signing by honest validators (across restarts).
//!
//! Same configuration and seed → same trace, hashed into `trace_hash`.
//!
//! Not simulated: signature verification (the simulated network cannot forge senders, and
//! the node's verification pool is tested on its own), transaction gossip (every node sees
//! one shared transaction pool).

mod network;
mod node;
mod run;

pub use run::{run_seed, run_seeds, SeedOutcome, SimConfig, SimSummary};
