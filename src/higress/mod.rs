//! The Higress mapping: from a lifecycle event and the current objects to the objects the Higress
//! console would have written. Pure: no I/O, so every rule is unit-tested to the letter of the spec.

pub mod names;
pub mod ops;
pub mod plan;
pub mod plugins;
pub mod provider;
pub mod route;
pub mod state;

pub use plan::{plan, simulate, Action, Decision, Operation, Plan, Refusal, Settings, Step};
pub use plugins::ConsoleVersion;
pub use state::{Kind, ObjectKey, State};
