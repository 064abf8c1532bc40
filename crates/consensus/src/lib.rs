//! Tendermint core.
