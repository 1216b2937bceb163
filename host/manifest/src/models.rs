//! `[models.NAME]`: one ONNX file, or variants of one model (FP32, INT8, a
//! smaller network) with their measured accuracy, of which each host
//! serves the one that best meets the stated objective on its target.

use toml::Spanned;
use weir_core::objective::KNOWN_ARCHES;
use weir_core::DeviceChoice;

use crate::parse::{artifact_decl, check_name};
use crate::schema::{RawModel, RawModelVariant};
use crate::{limits, ManifestError, ModelDecl, ModelVariantDecl, Place, VariantChoice};

/// At most this many variants per model: each may be loaded and measured.
pub const MAX_VARIANTS: usize = 8;

pub(crate) fn model_decl(place: &Place, name: &str, model: &RawModel) -> Result<ModelDecl, ManifestError> {
    let key = format!("models.{name}");
    let (artifact, variants) = match (&model.source, &model.variants) {
        (Some(source), None) => (artifact_decl(place, &key, source, &model.digest, &model.signed_by)?, Vec::new()),
        (None, Some(variants)) => {
            if let Some(misplaced) = &model.digest {
                return Err(place.at(misplaced, format!("{key}.digest: with variants, pin each variant's own file")));
            }
            if let Some(misplaced) = &model.signed_by {
                return Err(place.at(misplaced, format!("{key}.signed_by: with variants, give each variant its own")));
            }
            let variants = variant_decls(place, &key, variants)?;
            (most_accurate(&variants).artifact.clone(), variants)
        }
        (Some(source), Some(_)) => {
            return Err(place.at(
                source,
                format!(
                    "{key}: give either `source` or `[{key}.variants.NAME]` tables (each with its source), not both"
                ),
            ))
        }
        (None, None) => {
            return Err(place.nowhere(format!(
                "{key} has no `source`: write `source = \"model.onnx\"` (or `oci://…`), or declare variants \
                 `[{key}.variants.NAME]`"
            )))
        }
    };
    let mut decl = ModelDecl {
        name: name.into(),
        artifact,
        device: DeviceChoice::Cpu,
        threads: 1,
        accuracy: None,
        variants,
        choice: VariantChoice::default(),
    };
    if let Some(device) = &model.device {
        decl.device = device.get_ref().parse().map_err(|e: String| place.at(device, format!("{key}.device: {e}")))?;
    }
    if let Some(threads) = &model.threads {
        if *threads.get_ref() == 0 {
            return Err(place.at(threads, format!("{key}.threads must be at least 1")));
        }
        decl.threads = limits::count_shown(place, threads, &format!("{key}.threads"), 1, limits::MAX_THREADS, "1024")?;
    }
    if let Some(accuracy) = &model.accuracy {
        if !decl.variants.is_empty() {
            return Err(place.at(accuracy, format!("{key}.accuracy: with variants, each variant states its own")));
        }
        decl.accuracy = Some(fraction(place, accuracy, &format!("{key}.accuracy"))?);
    }
    choice(place, &key, model, &mut decl)?;
    Ok(decl)
}

/// `objective` and `min_accuracy`, checked against what is declared.
fn choice(place: &Place, key: &str, model: &RawModel, decl: &mut ModelDecl) -> Result<(), ManifestError> {
    if let Some(objective) = &model.objective {
        if decl.variants.is_empty() {
            return Err(place.at(
                objective,
                format!(
                    "{key}.objective chooses between variants, and {key} has none; declare `[{key}.variants.NAME]`"
                ),
            ));
        }
        decl.choice.objective =
            objective.get_ref().parse().map_err(|e: String| place.at(objective, format!("{key}.objective: {e}")))?;
    }
    let Some(floor) = &model.min_accuracy else { return Ok(()) };
    let min = fraction(place, floor, &format!("{key}.min_accuracy"))?;
    let best = if decl.variants.is_empty() { decl.accuracy } else { Some(most_accurate(&decl.variants).accuracy) };
    match best {
        None => {
            return Err(place.at(floor, format!("{key}.min_accuracy needs the model's measured `accuracy` beside it")))
        }
        Some(best) if best < min => {
            return Err(place
                .at(floor, format!("{key}.min_accuracy = {min}: no variant reaches it (the best declared is {best})")))
        }
        Some(_) => {}
    }
    decl.choice.min_accuracy = Some(min);
    Ok(())
}

fn variant_decls(
    place: &Place,
    key: &str,
    variants: &std::collections::BTreeMap<String, RawModelVariant>,
) -> Result<Vec<ModelVariantDecl>, ManifestError> {
    if variants.is_empty() {
        return Err(place.nowhere(format!("{key}.variants is empty: declare at least one `[{key}.variants.NAME]`")));
    }
    if let Some((_, extra)) = variants.iter().nth(MAX_VARIANTS) {
        return Err(place.at(&extra.source, format!("{key}.variants: at most {MAX_VARIANTS} variants per model")));
    }
    let mut decls = Vec::with_capacity(variants.len());
    for (name, raw) in variants {
        let vkey = format!("{key}.variants.{name}");
        check_name(place, &Spanned::new(raw.source.span(), name.clone()), "variant")?;
        let artifact = artifact_decl(place, &vkey, &raw.source, &raw.digest, &raw.signed_by)?;
        let Some(accuracy) = &raw.accuracy else {
            return Err(place.at(
                &raw.source,
                format!("{vkey} has no `accuracy`: state its measured accuracy, e.g. `accuracy = 0.97`"),
            ));
        };
        let accuracy = fraction(place, accuracy, &format!("{vkey}.accuracy"))?;
        let mut targets = Vec::new();
        if let Some(listed) = &raw.targets {
            for arch in listed.get_ref().items() {
                if !KNOWN_ARCHES.contains(&arch) {
                    return Err(place.at(
                        listed,
                        format!("{vkey}.targets: unknown architecture `{arch}`; known: {}", KNOWN_ARCHES.join(", ")),
                    ));
                }
                targets.push(arch.to_string());
            }
            if targets.is_empty() {
                return Err(
                    place.at(listed, format!("{vkey}.targets: name at least one architecture, or leave it out"))
                );
            }
        }
        decls.push(ModelVariantDecl { name: name.clone(), artifact, accuracy, targets });
    }
    Ok(decls)
}

/// The variant with the highest declared accuracy (the first by name on a tie).
fn most_accurate(variants: &[ModelVariantDecl]) -> &ModelVariantDecl {
    variants.iter().fold(&variants[0], |best, v| if v.accuracy > best.accuracy { v } else { best })
}

/// A fraction in 0..=1 (an accuracy).
fn fraction(place: &Place, value: &Spanned<f64>, key: &str) -> Result<f64, ManifestError> {
    let v = *value.get_ref();
    if !(0.0..=1.0).contains(&v) {
        return Err(place.at(value, format!("{key} = {v}: write a fraction from 0 to 1 (0.97 for 97 %)")));
    }
    Ok(v)
}
