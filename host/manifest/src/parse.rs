//! From the raw TOML to a checked [`Manifest`]: paths joined, names
//! cross-checked, routes parsed, cycles refused. Nothing but the text is
//! read here (no environment, no file system).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::time::Duration;

use toml::Spanned;
use weir_core::tensor::parse_datatype;
use weir_core::{Digest, ModelGrants, Pricing, StepGrants, StepLimits};
use weir_registry::{ArtifactRef, PublicKey, TrustRequirement};

use crate::limits;
use crate::place::{Location, Place};
use crate::schema::{OneOrMany, RawComponent, RawLimits, RawManifest, RawPipeline, RawStep};
use crate::{
    ArtifactDecl, ArtifactSource, ComponentDecl, Manifest, ManifestError, ModelDecl, Pipeline, ProvenanceSettings,
    Route, Source, Step, TensorDecl, MANIFEST_VERSION,
};

/// The most precompiled files one component may list (one per target).
const MAX_PRECOMPILED: usize = 16;

/// Parse and check manifest text; `file` is used for messages and paths.
pub fn parse(file: &Path, text: &str) -> Result<Manifest, ManifestError> {
    let place = Place::new(file, text);
    let raw: RawManifest = toml::from_str(text).map_err(|e| place.toml_error(&e))?;
    if let Some(version) = &raw.manifest_version {
        if *version.get_ref() != MANIFEST_VERSION {
            return Err(place.at(
                version,
                format!(
                    "manifest_version = {} is not a format this weir reads; it reads manifest_version = {MANIFEST_VERSION}",
                    version.get_ref()
                ),
            ));
        }
    }
    let models = raw
        .models
        .iter()
        .map(|(name, model)| Ok((name.clone(), crate::models::model_decl(&place, name, model)?)))
        .collect::<Result<BTreeMap<_, _>, ManifestError>>()?;
    let components = raw
        .components
        .iter()
        .map(|(name, component)| Ok((name.clone(), component_decl(&place, name, component)?)))
        .collect::<Result<BTreeMap<_, _>, ManifestError>>()?;
    let pipelines = raw
        .pipelines
        .iter()
        .map(|(name, pipeline)| Ok((name.clone(), pipeline_decl(&place, name, pipeline, &models, &components)?)))
        .collect::<Result<BTreeMap<_, _>, ManifestError>>()?;
    let experiments = crate::experiments::experiments(&place, &raw.experiments, &pipelines, &models, &components)?;
    let accounting = pricing(&place, &raw)?;
    let provenance = match &raw.provenance {
        None => None,
        Some(p) => Some(ProvenanceSettings {
            path: place.resolve(p.path.get_ref()),
            retention: match &p.retention {
                Some(r) => limits::duration(&place, r, "provenance.retention", &limits::RETENTION)?,
                None => Duration::from_secs(30 * 86_400),
            },
            keep_tensors: p.keep_tensors,
            hash_key: p.hash_key.as_ref().map(|k| place.resolve(k.get_ref())),
        }),
    };
    let trigger_names = trigger_names(&place, &raw)?;
    Ok(Manifest {
        path: file.to_path_buf(),
        models,
        components,
        pipelines,
        accounting,
        provenance,
        experiments,
        text: text.into(),
        trigger_names,
    })
}

/// The triggers the manifest configures, top-level or per pipeline (each
/// once, where it was first written).
fn trigger_names(place: &Place, raw: &RawManifest) -> Result<Vec<(String, Location)>, ManifestError> {
    let mut names: Vec<(String, Location)> = Vec::new();
    let mut add = |name: &Spanned<String>| {
        if !names.iter().any(|(n, _)| n == name.get_ref()) {
            names.push((name.get_ref().clone(), place.location(name.span())));
        }
    };
    raw.triggers.keys().for_each(&mut add);
    for (pipeline, p) in &raw.pipelines {
        p.triggers.keys().for_each(&mut add);
        if let Some(legacy) = &p.nats {
            let name = crate::sections::LEGACY_PIPELINE_SECTION;
            if p.triggers.keys().any(|k| k.get_ref() == name) {
                return Err(place.at(
                    legacy,
                    format!("pipelines.{pipeline}: [pipelines.{pipeline}.{name}] and [pipelines.{pipeline}.triggers.{name}] are the same section; keep one"),
                ));
            }
            add(&Spanned::new(legacy.span(), name.to_string()));
        }
    }
    Ok(names)
}

pub(crate) fn check_name(place: &Place, name: &Spanned<String>, what: &str) -> Result<(), ManifestError> {
    let ok =
        !name.get_ref().is_empty() && name.get_ref().chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !ok {
        return Err(place.at(name, format!("{what} name `{}` must be letters, digits, `-` or `_`", name.get_ref())));
    }
    Ok(())
}

/// A `source` (file path or `oci://` reference) and its optional `digest` pin.
pub(crate) fn artifact_decl(
    place: &Place,
    key: &str,
    source: &Spanned<String>,
    digest: &Option<Spanned<String>>,
    signed_by: &Option<Spanned<OneOrMany>>,
) -> Result<ArtifactDecl, ManifestError> {
    let pin = match digest {
        Some(digest) => {
            Some(digest.get_ref().parse::<Digest>().map_err(|e| place.at(digest, format!("{key}.digest: {e}")))?)
        }
        None => None,
    };
    let text = source.get_ref();
    let declared_at = place.location(source.span());
    let source = if ArtifactRef::is_oci(text) {
        ArtifactSource::Oci(text.parse().map_err(|e| place.at(source, format!("{key}.source: {e}")))?)
    } else {
        // Whether the file exists is checked by `Manifest::check_files`.
        ArtifactSource::File(place.resolve(text))
    };
    let signed_by = match signed_by {
        Some(keys) => Some(signed_by_keys(place, key, keys, &source)?),
        None => None,
    };
    Ok(ArtifactDecl { source, pin, signed_by, declared_at })
}

/// `signed_by`: public key files, read now so a bad one stops the manifest here.
fn signed_by_keys(
    place: &Place,
    key: &str,
    keys: &Spanned<OneOrMany>,
    source: &ArtifactSource,
) -> Result<TrustRequirement, ManifestError> {
    if matches!(source, ArtifactSource::File(_)) {
        let message = format!(
            "{key}.signed_by: only an oci:// artifact carries a signature; pin a local file with `digest = \"sha256:…\"`"
        );
        return Err(place.at(keys, message));
    }
    let paths = keys.get_ref().items();
    if paths.is_empty() || paths.len() > 16 {
        return Err(place.at(keys, format!("{key}.signed_by: name 1 to 16 public key files")));
    }
    let mut public = Vec::new();
    for path in &paths {
        let loaded = PublicKey::from_pem_file(&place.resolve(path))
            .map_err(|e| place.at(keys, format!("{key}.signed_by: {e}")))?;
        public.push(loaded);
    }
    Ok(TrustRequirement { keys: public, from: format!("`{key}.signed_by` ({})", paths.join(", ")) })
}

fn component_decl(place: &Place, name: &str, component: &RawComponent) -> Result<ComponentDecl, ManifestError> {
    let key = format!("components.{name}");
    let artifact = artifact_decl(place, &key, &component.source, &component.digest, &component.signed_by)?;
    let mut precompiled = Vec::new();
    if let Some(files) = &component.precompiled {
        for file in files.get_ref().items() {
            if ArtifactRef::is_oci(file) {
                let message = format!(
                    "{key}.precompiled: `{file}` is a registry reference; list local files here (native code from \
                     a registry is pushed with its component, `weir push --precompile`, and taken only when signed)"
                );
                return Err(place.at(files, message));
            }
            precompiled.push(place.resolve(file));
        }
        if precompiled.len() > MAX_PRECOMPILED {
            return Err(place.at(files, format!("{key}.precompiled: at most {MAX_PRECOMPILED} files")));
        }
    }
    Ok(ComponentDecl { name: name.into(), artifact, precompiled })
}

/// `input.x`, `step.tensor`, optionally prefixed with `name=` to rename.
fn route(place: &Place, text: &Spanned<String>, context: &str) -> Result<Route, ManifestError> {
    let raw = text.get_ref().trim();
    let (rename, source) = match raw.split_once('=') {
        Some((name, source)) => (Some(name.trim()), source.trim()),
        None => (None, raw),
    };
    let (owner, tensor) = source.split_once('.').filter(|(o, t)| !o.is_empty() && !t.is_empty()).ok_or_else(|| {
        place.at(text, format!("{context}: `{raw}` is not a route; write `input.<tensor>`, `<step>.<tensor>` or `<name>=<step>.<tensor>`"))
    })?;
    let source = match owner {
        "input" => Source::Input(tensor.into()),
        step => Source::Step { step: step.into(), tensor: tensor.into() },
    };
    let name = rename.unwrap_or(tensor).to_string();
    if name.is_empty() {
        return Err(place.at(text, format!("{context}: `{raw}` renames to an empty name")));
    }
    Ok(Route { name, source })
}

fn limits(place: &Place, raw: &RawLimits, context: &str) -> Result<StepLimits, ManifestError> {
    let mut checked = StepLimits::default();
    if let Some(memory) = &raw.memory {
        checked.memory_bytes = limits::bytes(place, memory, &format!("{context}.limits.memory"), &limits::STEP_MEMORY)?;
    }
    if let Some(timeout) = &raw.timeout {
        checked.timeout =
            limits::duration(place, timeout, &format!("{context}.limits.timeout"), &limits::STEP_TIMEOUT)?;
    }
    if let Some(fuel) = &raw.fuel {
        checked.fuel =
            Some(limits::count_shown(place, fuel, &format!("{context}.limits.fuel"), 1, limits::MAX_FUEL, "10^15")?);
    }
    Ok(checked)
}

fn config_values(step: &RawStep, context: &str, place: &Place) -> Result<Vec<(String, String)>, ManifestError> {
    step.config
        .iter()
        .map(|(key, value)| {
            let text = match value {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                other => {
                    return Err(place.at(
                        &step.name,
                        format!(
                            "{context}.config.{key}: {} {} is not a config value; use a string, number or boolean",
                            article(other.type_str()),
                            other.type_str()
                        ),
                    ))
                }
            };
            Ok((key.clone(), text))
        })
        .collect()
}

/// `a` or `an`, for a TOML type name in a message.
fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

/// A step, or a component declared like one (`kind`: `steps`, `monitors`, `explainers`).
pub(crate) fn step_decl(
    place: &Place,
    pipeline: &str,
    kind: &str,
    raw: &RawStep,
    models: &BTreeMap<String, ModelDecl>,
    components: &BTreeMap<String, ComponentDecl>,
) -> Result<Step, ManifestError> {
    let name = raw.name.get_ref();
    let context = format!("pipelines.{pipeline}.{kind}.{name}");
    check_name(place, &raw.name, kind.trim_end_matches('s'))?;
    if name == "input" {
        return Err(
            place.at(&raw.name, format!("{context}: `input` is reserved for the pipeline's inputs; rename the step"))
        );
    }
    if !components.contains_key(raw.component.get_ref()) {
        let known: Vec<&str> = components.keys().map(String::as_str).collect();
        return Err(place.at(
            &raw.component,
            format!("{context}.component: no component named `{}` (declared: {known:?})", raw.component.get_ref()),
        ));
    }
    for model in &raw.models {
        if !models.contains_key(model.get_ref()) {
            let known: Vec<&str> = models.keys().map(String::as_str).collect();
            return Err(place
                .at(model, format!("{context}.models: no model named `{}` (declared: {known:?})", model.get_ref())));
        }
    }
    let mut inputs = Vec::new();
    let mut names = HashSet::new();
    for text in &raw.inputs {
        let route = route(place, text, &format!("{context}.inputs"))?;
        if !names.insert(route.name.clone()) {
            return Err(place.at(
                text,
                format!("{context}.inputs: two inputs are named `{}`; rename one with `name=...`", route.name),
            ));
        }
        inputs.push(route);
    }
    Ok(Step {
        name: name.clone(),
        component: raw.component.get_ref().clone(),
        inputs,
        grants: StepGrants {
            config: config_values(raw, &context, place)?,
            nn: ModelGrants {
                models: raw.models.iter().map(|m| m.get_ref().clone()).collect(),
                load_model_bytes: false,
            },
            dirs: crate::grants::dirs(place, raw, &context)?,
            env: crate::grants::env(place, raw, &context)?,
            http: crate::grants::http(place, raw, &context)?,
        },
        limits: limits(place, &raw.limits, &context)?,
    })
}

fn pipeline_decl(
    place: &Place,
    name: &str,
    raw: &RawPipeline,
    models: &BTreeMap<String, ModelDecl>,
    components: &BTreeMap<String, ComponentDecl>,
) -> Result<Pipeline, ManifestError> {
    let mut inputs = Vec::new();
    for decl in &raw.inputs {
        let datatype = parse_datatype(decl.datatype.get_ref()).ok_or_else(|| {
            place.at(
                &decl.datatype,
                format!(
                    "pipelines.{name}.inputs: unknown datatype `{}` (FP32, INT64, BYTES, ...)",
                    decl.datatype.get_ref()
                ),
            )
        })?;
        let shape = check_shape(decl.shape.get_ref()).map_err(|e| {
            place.at(&decl.shape, format!("pipelines.{name}.inputs.{}.shape: {e}", decl.name.get_ref()))
        })?;
        inputs.push(TensorDecl { name: decl.name.get_ref().clone(), datatype, shape });
    }
    if raw.steps.is_empty() {
        return Err(place.nowhere(format!("pipelines.{name}: a pipeline needs at least one step")));
    }
    let mut steps = Vec::new();
    let mut spans = HashMap::new();
    for raw_step in &raw.steps {
        let step = step_decl(place, name, "steps", raw_step, models, components)?;
        if spans.insert(step.name.clone(), raw_step).is_some() {
            return Err(place.at(&raw_step.name, format!("pipelines.{name}: two steps are named `{}`", step.name)));
        }
        steps.push(step);
    }
    let step_names: Vec<&str> = steps.iter().map(|s| s.name.as_str()).collect();
    let check_source = |source: &Source, text: &Spanned<String>, context: String| -> Result<(), ManifestError> {
        match source {
            Source::Step { step, .. } if !step_names.contains(&step.as_str()) => Err(place.at(
                text,
                format!("{context}: no step named `{step}` in pipeline `{name}` (steps: {})", step_names.join(", ")),
            )),
            Source::Input(tensor) if !inputs.is_empty() && !inputs.iter().any(|d| &d.name == tensor) => Err(place.at(
                text,
                format!(
                    "{context}: pipeline `{name}` declares no input `{tensor}` (inputs: {})",
                    inputs.iter().map(|d| d.name.as_str()).collect::<Vec<_>>().join(", ")
                ),
            )),
            _ => Ok(()),
        }
    };
    for (step, raw_step) in steps.iter().zip(&raw.steps) {
        for (route, text) in step.inputs.iter().zip(&raw_step.inputs) {
            check_source(&route.source, text, format!("pipelines.{name}.steps.{}.inputs", step.name))?;
            if matches!(&route.source, Source::Step { step: from, .. } if from == &step.name) {
                return Err(
                    place.at(text, format!("pipelines.{name}.steps.{}: a step cannot read its own output", step.name))
                );
            }
        }
    }
    if raw.outputs.is_empty() {
        return Err(place.nowhere(format!(
            "pipelines.{name}.outputs: a pipeline needs at least one output (`name = \"step.tensor\"`)"
        )));
    }
    let mut outputs = Vec::new();
    let mut output_types = BTreeMap::new();
    for (output, raw_output) in &raw.outputs {
        let context = format!("pipelines.{name}.outputs.{output}");
        let (from, declared) = output_decl(place, output, raw_output, &context)?;
        if let Some(declared) = declared {
            output_types.insert(output.clone(), declared);
        }
        let text = Spanned::new(raw_output.span(), from);
        let route = route(place, &text, &context)?;
        check_source(&route.source, &text, context)?;
        outputs.push(Route { name: output.clone(), source: route.source });
    }
    let mut sensitive = Vec::new();
    for text in &raw.sensitive {
        let route = route(place, text, &format!("pipelines.{name}.sensitive"))?;
        check_source(&route.source, text, format!("pipelines.{name}.sensitive"))?;
        sensitive.push(route.source);
    }
    let steps = topological_order(steps).map_err(|cycle| {
        let first = spans.get(&cycle[0]).expect("cycle names are steps");
        place.at(&first.name, format!("pipelines.{name}: the steps form a cycle: {}", cycle.join(" -> ")))
    })?;
    let explainers = crate::offpath::explainers(place, name, &raw.explainers, &steps, models, components)?;
    let request_inputs: Vec<String> = {
        let mut names: Vec<String> = inputs.iter().map(|d: &TensorDecl| d.name.clone()).collect();
        for route in steps.iter().flat_map(|s| &s.inputs).chain(&outputs) {
            if let Source::Input(input) = &route.source {
                if !names.contains(input) {
                    names.push(input.clone());
                }
            }
        }
        names
    };
    let request_inputs: Vec<&str> = request_inputs.iter().map(String::as_str).collect();
    let base_dir = place.file.parent().unwrap_or(Path::new("."));
    let monitors = crate::offpath::monitors(
        place,
        name,
        &raw.monitors,
        &steps,
        &request_inputs,
        &sensitive,
        models,
        components,
        base_dir,
    )?;
    Ok(Pipeline {
        name: name.into(),
        description: raw.description.clone(),
        inputs,
        explainers,
        monitors,
        steps,
        outputs,
        output_types,
        taps: raw.taps.unwrap_or(sensitive.is_empty() && raw.protect.is_empty()),
        sensitive,
        protect: crate::grants::policies(place, raw, name)?,
    })
}

/// An output is `"step.tensor"` or `{ from = "step.tensor", datatype = "...", shape = [...] }`.
fn output_decl(
    place: &Place,
    output: &str,
    raw: &Spanned<toml::Value>,
    context: &str,
) -> Result<(String, Option<TensorDecl>), ManifestError> {
    let expected = || {
        place.at(raw, format!("{context}: expected \"step.tensor\" or {{ from = \"step.tensor\", datatype = \"FP32\", shape = [-1] }}"))
    };
    match raw.get_ref() {
        toml::Value::String(from) => Ok((from.clone(), None)),
        toml::Value::Table(table) => {
            if let Some(key) = table.keys().find(|k| !["from", "datatype", "shape"].contains(&k.as_str())) {
                return Err(
                    place.at(raw, format!("{context}: unknown field `{key}`, expected `from`, `datatype` or `shape`"))
                );
            }
            let from = table.get("from").and_then(toml::Value::as_str).ok_or_else(expected)?;
            let datatype_name = table.get("datatype").and_then(toml::Value::as_str).ok_or_else(expected)?;
            let datatype = parse_datatype(datatype_name).ok_or_else(|| {
                place.at(
                    raw,
                    format!("{context}.datatype: unknown datatype `{datatype_name}` (FP32, INT64, BYTES, ...)"),
                )
            })?;
            let shape = table
                .get("shape")
                .and_then(toml::Value::as_array)
                .and_then(|dims| dims.iter().map(toml::Value::as_integer).collect::<Option<Vec<i64>>>())
                .ok_or_else(expected)?;
            let shape = check_shape(&shape).map_err(|e| place.at(raw, format!("{context}.shape: {e}")))?;
            Ok((from.to_string(), Some(TensorDecl { name: output.into(), datatype, shape })))
        }
        _ => Err(expected()),
    }
}

/// A declared shape: at most `MAX_RANK` dimensions, each `-1` (any size)
/// or 0 to `MAX_DIM`.
fn check_shape(shape: &[i64]) -> Result<Vec<i64>, String> {
    if shape.len() > limits::MAX_RANK {
        return Err(format!("{} dimensions is too many; allowed: at most {}", shape.len(), limits::MAX_RANK));
    }
    if let Some(dim) = shape.iter().find(|&&d| !(-1..=limits::MAX_DIM).contains(&d)) {
        return Err(format!("dimension {dim} is out of range; allowed: -1 (any size) or 0 to 2^53"));
    }
    Ok(shape.to_vec())
}

/// Kahn's algorithm; on a cycle, the names along it (first repeated last).
fn topological_order(steps: Vec<Step>) -> Result<Vec<Step>, Vec<String>> {
    let deps = |step: &Step| -> HashSet<String> {
        step.inputs
            .iter()
            .filter_map(|r| match &r.source {
                Source::Step { step, .. } => Some(step.clone()),
                Source::Input(_) => None,
            })
            .collect()
    };
    let mut remaining: Vec<(Step, HashSet<String>)> = steps
        .into_iter()
        .map(|s| {
            let d = deps(&s);
            (s, d)
        })
        .collect();
    let mut ordered: Vec<Step> = Vec::new();
    while !remaining.is_empty() {
        let ready = remaining.iter().position(|(_, d)| d.iter().all(|dep| ordered.iter().any(|s| &s.name == dep)));
        match ready {
            Some(index) => ordered.push(remaining.remove(index).0),
            None => {
                // Walk dependencies from any stuck step until a name repeats.
                let graph: HashMap<&str, &HashSet<String>> =
                    remaining.iter().map(|(s, d)| (s.name.as_str(), d)).collect();
                let mut path = vec![remaining[0].0.name.clone()];
                loop {
                    let current = path.last().expect("non-empty");
                    let next = graph[current.as_str()]
                        .iter()
                        .find(|d| graph.contains_key(d.as_str()))
                        .expect("stuck steps wait on stuck steps")
                        .clone();
                    if let Some(start) = path.iter().position(|p| p == &next) {
                        let mut cycle = path[start..].to_vec();
                        cycle.push(next);
                        return Err(cycle);
                    }
                    path.push(next);
                }
            }
        }
    }
    Ok(ordered)
}

fn pricing(place: &Place, raw: &RawManifest) -> Result<Pricing, ManifestError> {
    let mut pricing = Pricing::default();
    let a = &raw.accounting;
    let fields = [
        (&a.cpu_second, "cpu_second", &mut pricing.cpu_second),
        (&a.gib_second, "gib_second", &mut pricing.gib_second),
        (&a.kwh, "kwh", &mut pricing.kwh),
        (&a.grid_gco2e_per_kwh, "grid_gco2e_per_kwh", &mut pricing.grid_gco2e_per_kwh),
        (&a.watts_per_core, "watts_per_core", &mut pricing.watts_per_core),
    ];
    for (value, field, target) in fields {
        if let Some(value) = value {
            if !value.get_ref().is_finite() || *value.get_ref() < 0.0 {
                return Err(place.at(value, format!("accounting.{field} must be a number >= 0")));
            }
            if *value.get_ref() > limits::MAX_PRICE {
                return Err(place.at(
                    value,
                    format!(
                        "accounting.{field} = {:e} is too large; allowed: 0 to {:e}",
                        value.get_ref(),
                        limits::MAX_PRICE
                    ),
                ));
            }
            *target = *value.get_ref();
        }
    }
    Ok(pricing)
}
