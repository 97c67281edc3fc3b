//! Shared code of the tools.
