//! End-to-end tests of the RPC over real HTTP and WebSocket on loopback, against a mock node.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cometbft;
mod http;
mod mock;
mod ws;
