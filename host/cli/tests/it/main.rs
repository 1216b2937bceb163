//! weir's integration tests, in one binary (each test binary links wasmtime,
//! so one binary builds once): the `weir` binary end to end (CLI, HTTP,
//! jobs, NATS, registries, models) and the libraries it is made of
//! (sandbox, executor, receipts) on real components, models and services.

mod common;

mod aarch64;
mod access;
mod cli;
mod cluster;
mod console;
mod deploy;
mod docs;
mod egress;
mod experiments;
mod explain;
mod feedback;
mod hardening;
mod http;
mod interop;
mod jobs;
mod models;
mod monitors;
mod nats;
mod pipelines;
mod policy;
mod precompiled;
mod registry;
mod retrain;
mod router;
mod sandbox;
mod signing;
mod ui;
mod variants;
