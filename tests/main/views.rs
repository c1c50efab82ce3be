//! Tests of what agents and people look at: `mara mcp` and `mara report --html`.
