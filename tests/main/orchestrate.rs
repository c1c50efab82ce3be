//! Tests of `mara run` (the orchestrator) and `mara demo`.
