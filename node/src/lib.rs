//! `fedimpute-node`: the fedimpute node daemon and its command-line interface.
//!
//! One node serves one institution: its users, audit log and files, an HTTPS API for its
//! researchers, and a libp2p presence in the federation through which jobs travel to the node
//! that hosts their panel. The binary
//! `fedimpute` is a thin shell over this library; the library is what the tests drive.

pub mod admin_key;
pub mod api;
pub mod at_rest;
pub mod auth;
pub mod backup;
pub mod bounded;
pub mod cli;
pub mod config;
pub mod credentials;
pub mod daemon;
pub mod federation;
pub mod files;
pub mod html;
pub mod identity;
pub mod imputation;
pub mod jobs;
pub mod mail;
pub mod metrics;
pub mod node_handle;
pub mod p2p;
pub mod secrets;
pub mod store;
pub mod time;
pub mod tls;
