//! higress-route-worker: applies model lifecycle events from Kafka to the Higress AI gateway,
//! writing Kubernetes objects exactly as the Higress console does.

pub mod audit;
pub mod cluster;
pub mod contract;
pub mod event;
pub mod gateway;
pub mod higress;
pub mod metrics;
pub mod reason;
pub mod render;
pub mod result;
pub mod retry;
pub mod secret;
pub mod telemetry;
pub mod worker;
pub mod yaml;
