//! The Higress mapping: from a lifecycle event and the current objects to the objects the Higress
//! console would have written. Pure: no I/O, so every rule is unit-tested to the letter of the spec.

pub mod decide;
pub mod deploy;
pub mod fence;
pub mod index;
pub mod names;
pub mod object;
pub mod ops;
pub mod plan;
pub mod plugins;
pub mod provider;
pub mod reads;
pub mod retire;
pub mod rotate;
pub mod route;
pub mod simulate;
pub mod state;

pub use decide::plan;
pub use plan::{write_rank, Action, Decision, Plan, Refusal, Settings, Step};
pub use plugins::ConsoleVersion;
pub use reads::{reads, ReadSet};
pub use simulate::{apply_step, simulate, Operation};
pub use state::{Kind, ObjectKey, State};
