//! Sluice's REST API: the model shared with sluiced's configuration file,
//! the HTTPS server (axum over rustls, bearer-token or client-certificate
//! authentication, an OpenAPI document generated from the handlers), the
//! Prometheus text writer and the blocking client sluicectl uses.
//!
//! The server never holds daemon state: each request becomes a
//! [`server::Command`] for sluiced's event loop, which answers it. See
//! docs/api.md.

pub mod client;
pub mod metrics;
pub mod model;
pub mod server;
