//! The OCI distribution API for ocikit: a registry client that is one more
//! [`ImageSource`](ocikit_layout::engine::ImageSource) ([`RegistrySource`]) and
//! [`ImageSink`](ocikit_layout::engine::ImageSink) ([`RegistrySink`]) of the engine, so `pull`
//! and `push` are the same selection and transfer as `copy`; and a read-only server of
//! layouts (`serve`).
//!
//! - [`reference`]: image references, Docker's short names.
//! - [`auth`]: credentials (Docker's `config.json` order, helpers, `login`) and challenges.
//! - [`client`]: the HTTP client (scheme, auth, retries, redirects) and [`client::repo`], the
//!   verified requests of one repository.
//! - [`source`], [`sink`]: the engine's seams.
//! - [`ops`]: `pull` and `push`.
//! - [`serve`]: `ocikit serve`, layouts read-only over the distribution API.

pub mod auth;
pub mod client;
mod error;
pub mod ops;
pub mod reference;
pub mod serve;
pub mod sink;
pub mod source;

pub use client::{Client, ClientOptions, Progress};
pub use error::{Error, Result};
pub use ops::{pull, push, PullOptions, PullReport, PushOptions, PushReport};
pub use reference::ImageRef;
pub use sink::RegistrySink;
pub use source::RegistrySource;
