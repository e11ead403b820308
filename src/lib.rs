//! higress-route-worker: applies model lifecycle events from Kafka to the Higress AI gateway,
//! writing Kubernetes objects exactly as the Higress console does.

pub mod contract;
pub mod event;
pub mod higress;
pub mod render;
pub mod secret;
pub mod yaml;
