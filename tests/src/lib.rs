//! Workspace end-to-end tests: real processes, a real broker, kill -9. The tests live in `tests/`; this library holds their shared helpers.
