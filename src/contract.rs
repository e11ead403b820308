//! Validation against the published JSON Schemas in `schemas/` (placeholder until the schemas land).

use crate::event::Problem;
use serde_json::Value;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Schema {
    Deployed,
    Retired,
    Result,
}

pub fn validate(_schema: Schema, _value: &Value) -> Vec<Problem> {
    Vec::new()
}
