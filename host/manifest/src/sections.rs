//! Trigger sections, opaque to the manifest: `[triggers.NAME]` and
//! `[pipelines.P.triggers.NAME]` are kept as text the manifest does not
//! read, and each trigger deserialises its own section into its own typed
//! settings. The document is read again for that, so the trigger's
//! `Spanned` fields keep their places and its errors are located like the
//! manifest's own.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{DeserializeOwned, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::Deserializer;

use crate::place::Place;
use crate::{Manifest, ManifestError};

/// One pipeline's section of a trigger.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineSection<T> {
    pub pipeline: String,
    /// The section's key as written (for messages), e.g. `pipelines.p.triggers.nats`.
    pub key: String,
    pub value: T,
}

/// The one trigger whose per-pipeline section may also sit directly in the
/// pipeline's table (as manifests written before `triggers` had it).
pub(crate) const LEGACY_PIPELINE_SECTION: &str = "nats";

/// Where a section lies in the document: keys from the top, `*` for each
/// key at that level.
type KeyPath<'a> = &'a [&'a str];

impl Manifest {
    /// The names of the `[triggers.NAME]` sections, and those named in any
    /// pipeline's `triggers` table, each with where it was written.
    pub fn trigger_names(&self) -> &[(String, crate::place::Location)] {
        &self.trigger_names
    }

    /// A top-level section the manifest keeps opaque (`[access]`), as its
    /// reader's own type, or `None` when absent.
    pub fn opaque_section<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, ManifestError> {
        let mut found = Vec::new();
        self.read_sections(&[name], &mut found)?;
        Ok(found.pop().map(|(_, value)| value))
    }

    /// `[triggers.NAME]` as the trigger's own settings type, or `None` when
    /// the manifest has no such section.
    pub fn trigger_section<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, ManifestError> {
        let mut found = Vec::new();
        self.read_sections(&["triggers", name], &mut found)?;
        Ok(found.pop().map(|(_, value)| value))
    }

    /// Every pipeline's `[pipelines.P.triggers.NAME]`, as `(P, settings)`.
    /// `[pipelines.P.nats]`, the older place of the NATS section, is read
    /// as `[pipelines.P.triggers.nats]`.
    pub fn pipeline_trigger_sections<T: DeserializeOwned>(
        &self,
        name: &str,
    ) -> Result<Vec<PipelineSection<T>>, ManifestError> {
        let mut found = Vec::new();
        self.read_sections(&["pipelines", "*", "triggers", name], &mut found)?;
        let mut sections: Vec<PipelineSection<T>> = found
            .into_iter()
            .map(|(pipeline, value)| PipelineSection {
                key: format!("pipelines.{pipeline}.triggers.{name}"),
                pipeline,
                value,
            })
            .collect();
        if name == LEGACY_PIPELINE_SECTION {
            let mut legacy = Vec::new();
            self.read_sections(&["pipelines", "*", name], &mut legacy)?;
            sections.extend(legacy.into_iter().map(|(pipeline, value)| PipelineSection {
                key: format!("pipelines.{pipeline}.{name}"),
                pipeline,
                value,
            }));
        }
        sections.sort_by(|a, b| a.pipeline.cmp(&b.pipeline));
        Ok(sections)
    }

    /// Turns spans of this manifest's text into located errors (for the
    /// triggers' own checks of their sections).
    pub fn place(&self) -> Place<'_> {
        Place::new(&self.path, &self.text)
    }

    fn read_sections<T: DeserializeOwned>(
        &self,
        path: KeyPath,
        found: &mut Vec<(String, T)>,
    ) -> Result<(), ManifestError> {
        let seed = Pick { path, owner: String::new(), found, _value: PhantomData };
        let deserializer = toml::Deserializer::new(&self.text);
        seed.deserialize(deserializer).map_err(|e| self.place().toml_error(&e))
    }
}

/// Walks the document along `path`, deserialising `T` where it ends and
/// skipping everything else.
struct Pick<'p, 'f, T> {
    path: KeyPath<'p>,
    /// The key a `*` matched last (the pipeline's name).
    owner: String,
    found: &'f mut Vec<(String, T)>,
    _value: PhantomData<T>,
}

impl<'de, T: DeserializeOwned> DeserializeSeed<'de> for Pick<'_, '_, T> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de, T: DeserializeOwned> Visitor<'de> for Pick<'_, '_, T> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a table")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some((first, rest)) = self.path.split_first() else { return Ok(()) };
        while let Some(key) = map.next_key::<String>()? {
            if *first != "*" && key != *first {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            let owner = if *first == "*" { key.clone() } else { self.owner.clone() };
            if rest.is_empty() {
                let value = map.next_value::<T>()?;
                self.found.push((owner, value));
            } else {
                map.next_value_seed(Pick { path: rest, owner, found: &mut *self.found, _value: PhantomData })?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use serde::Deserialize;
    use toml::Spanned;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Queue {
        subject: Spanned<String>,
        #[serde(default)]
        depth: Option<u32>,
    }

    const TEXT: &str = r#"
[components.c]
source = "c.wasm"

[triggers.queue]
subject = "all"

[pipelines.a]
steps = [{ name = "s", component = "c" }]
outputs = { y = "s.y" }
[pipelines.a.triggers.queue]
subject = "a.in"

[pipelines.b]
steps = [{ name = "s", component = "c" }]
outputs = { y = "s.y" }
[pipelines.b.triggers.queue]
subject = "b.in"
dpeth = 3
"#;

    #[test]
    fn sections_are_read_by_their_trigger_with_places() {
        let manifest = crate::parse(Path::new("/m/weir.toml"), TEXT).unwrap();
        let top: Queue = manifest.trigger_section("queue").unwrap().unwrap();
        assert_eq!((top.subject.get_ref().as_str(), top.depth), ("all", None));
        assert!(manifest.trigger_section::<Queue>("other").unwrap().is_none());
        let error = manifest.pipeline_trigger_sections::<Queue>("queue").unwrap_err();
        assert_eq!((error.line, error.message.contains("dpeth")), (19, true), "{error}");
        let names: Vec<&str> = manifest.trigger_names().iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["queue"]);
    }
}
