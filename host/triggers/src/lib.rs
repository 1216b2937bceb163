//! weir-triggers: how requests reach pipelines.
//!
//! One contract ([`dispatch`]): a trigger hands a request to the
//! [`Dispatcher`], which runs it under the trigger's time limit, prices it,
//! records metrics and spans, and answers or fails with an `ErrorKind`.
//! Three triggers implement it, each with its own manifest section:
//! [`http`] (Open Inference Protocol v2 over HTTP, `[triggers.http]`, with
//! its gRPC twin [`grpc`], `[triggers.grpc]`),
//! [`jobs`] (asynchronous invocations in an embedded store,
//! `[triggers.jobs]`) and [`nats`] (JetStream consumers, `[triggers.nats]`
//! and `[pipelines.P.triggers.nats]`). [`oip`] is the wire format they share.

pub mod dispatch;
#[cfg(feature = "grpc")]
pub mod grpc;
#[cfg(not(feature = "grpc"))]
#[path = "absent/grpc.rs"]
pub mod grpc;
pub mod http;
pub mod jobs;
#[cfg(feature = "nats")]
pub mod nats;
#[cfg(not(feature = "nats"))]
#[path = "absent/nats.rs"]
pub mod nats;
pub mod oip;
pub mod reload;
pub mod sections;

pub use dispatch::{Completed, Dispatcher, Encoding, Failure, Generation, Invocation, Prepared, TriggerKind};
pub use reload::{Reload, Reloaded};

use weir_manifest::{Manifest, ManifestError};

/// Every trigger's settings, read from a manifest's sections.
#[derive(Debug, Clone, PartialEq)]
pub struct Triggers {
    pub http: http::HttpSettings,
    /// The gRPC listener, when `[triggers.grpc]` asks for one.
    pub grpc: Option<grpc::GrpcSettings>,
    pub jobs: jobs::JobSettings,
    pub nats: Option<nats::NatsSettings>,
}

impl Triggers {
    /// Read and check every trigger section of `manifest`; a section for a
    /// trigger weir does not have is an error.
    pub fn from_manifest(manifest: &Manifest) -> Result<Triggers, ManifestError> {
        sections::check_names(manifest)?;
        let triggers = Triggers {
            http: http::HttpSettings::from_manifest(manifest)?,
            grpc: grpc::GrpcSettings::from_manifest(manifest)?,
            jobs: jobs::JobSettings::from_manifest(manifest)?,
            nats: nats::NatsSettings::from_manifest(manifest)?,
        };
        // A lean build reads every section, and refuses what it left out.
        for (asked, trigger, feature) in [
            (triggers.grpc.is_some() && !cfg!(feature = "grpc"), "[triggers.grpc]", "grpc"),
            (triggers.nats.is_some() && !cfg!(feature = "nats"), "[triggers.nats]", "nats"),
        ] {
            if asked {
                return Err(ManifestError::at(
                    &manifest.path,
                    weir_manifest::Location::default(),
                    format!(
                        "{trigger}: this weir was built without it (cargo feature `{feature}`); rebuild with \
                         `--features {feature}`, or remove the section"
                    ),
                ));
            }
        }
        Ok(triggers)
    }
}
