//! Mapped shared-memory segments.
