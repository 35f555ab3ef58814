//! Firmware profiles: one TOML file per hardware class.
