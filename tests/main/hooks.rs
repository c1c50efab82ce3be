//! Tests of the git hooks: `mara hooks install`, trailers, reserved paths, progress.
