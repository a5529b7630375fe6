//! The configuration loader as a library: `tern serve` and `tern check` read files through it,
//! and the fuzz targets (`crates/fuzz`) feed it arbitrary text the same way. Everything else
//! of the `tern` binary lives under `main.rs`.

pub mod config;
