//! The OCI distribution API for ocikit: a registry client that is one more
//! [`ImageSource`](ocikit_layout::engine::ImageSource) and
//! [`ImageSink`](ocikit_layout::engine::ImageSink) of the engine (pull, push, referrers, auth,
//! retries), and a read-only server of layouts (`serve`).
pub mod serve;
