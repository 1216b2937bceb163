//! A step's grants beyond models and config: host directories it may read,
//! environment variables it sees and hosts it may call over HTTP. Checked when the manifest loads, so a
//! grant that cannot hold (a guest path with `..`, a bad variable name) is
//! an error at its line, not a surprise inside a step.

use weir_core::policy::OutputPolicy;
use weir_core::{DirGrant, HttpGrant};

use crate::place::Place;
use crate::schema::RawStep;
use crate::ManifestError;

/// Most directories and variables one step may be granted.
const MAX_GRANTS: usize = 64;

pub(crate) fn dirs(place: &Place, step: &RawStep, context: &str) -> Result<Vec<DirGrant>, ManifestError> {
    if step.files.len() > MAX_GRANTS {
        return Err(place.at(&step.name, format!("{context}.files: at most {MAX_GRANTS} directories")));
    }
    let mut grants: Vec<DirGrant> = Vec::new();
    for grant in &step.files {
        let guest = grant.destination.get_ref();
        let fine = guest.starts_with('/')
            && guest.len() <= 256
            && !guest.split('/').any(|part| part == ".." || part == ".")
            && !guest.contains('\0');
        if !fine {
            let message = format!("{context}.files: destination `{guest}` must be an absolute guest path without `.` or `..` (e.g. `/data`)");
            return Err(place.at(&grant.destination, message));
        }
        if grants.iter().any(|g| g.guest == *guest) {
            return Err(place.at(&grant.destination, format!("{context}.files: `{guest}` is granted twice")));
        }
        // Whether it exists is checked with the other files (`check_files`).
        grants.push(DirGrant { host: place.resolve(grant.source.get_ref()), guest: guest.clone() });
    }
    Ok(grants)
}

pub(crate) fn env(place: &Place, step: &RawStep, context: &str) -> Result<Vec<(String, String)>, ManifestError> {
    if step.env.len() > MAX_GRANTS {
        return Err(place.at(&step.name, format!("{context}.env: at most {MAX_GRANTS} variables")));
    }
    let mut vars = Vec::new();
    for (name, value) in &step.env {
        let fine = !name.is_empty()
            && name.len() <= 128
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit());
        if !fine {
            return Err(
                place.at(value, format!("{context}.env: `{name}` is not a variable name (letters, digits, `_`)"))
            );
        }
        if value.get_ref().len() > 4096 || value.get_ref().contains('\0') {
            return Err(place.at(value, format!("{context}.env.{name}: at most 4096 bytes, no NUL")));
        }
        vars.push((name.clone(), value.get_ref().clone()));
    }
    Ok(vars)
}

pub(crate) fn http(place: &Place, step: &RawStep, context: &str) -> Result<Vec<HttpGrant>, ManifestError> {
    if step.http.len() > MAX_GRANTS {
        return Err(place.at(&step.name, format!("{context}.http: at most {MAX_GRANTS} hosts")));
    }
    let mut grants: Vec<HttpGrant> = Vec::new();
    for raw in &step.http {
        let grant = raw.get_ref();
        let host = grant.host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
        let is_ip = host.parse::<std::net::IpAddr>().is_ok();
        let is_name = !host.is_empty()
            && host.len() <= 253
            && host.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    && !label.starts_with('-')
            });
        if !(is_ip || is_name) {
            let message = format!(
                "{context}.http: `{}` is not a host name or IP address (no scheme, port or path: \
                 `{{ host = \"features.internal\", port = 8080 }}`)",
                grant.host
            );
            return Err(place.at(raw, message));
        }
        if grant.port == 0 {
            return Err(place.at(raw, format!("{context}.http: port 0 cannot be called")));
        }
        let grant = HttpGrant { host, port: grant.port, loopback: grant.loopback };
        if grants.iter().any(|g| g.host == grant.host && g.port == grant.port) {
            return Err(place.at(raw, format!("{context}.http: `{grant}` is granted twice")));
        }
        grants.push(grant);
    }
    Ok(grants)
}

/// `[pipelines.NAME.protect.OUTPUT]`, each naming an output of the pipeline.
pub(crate) fn policies(
    place: &Place,
    pipeline: &crate::schema::RawPipeline,
    name: &str,
) -> Result<std::collections::BTreeMap<String, OutputPolicy>, ManifestError> {
    let mut policies = std::collections::BTreeMap::new();
    for (output, raw) in &pipeline.protect {
        let key = format!("pipelines.{name}.protect.{output}");
        if !pipeline.outputs.contains_key(output) {
            let known: Vec<&String> = pipeline.outputs.keys().collect();
            return Err(place.at(raw, format!("{key}: the pipeline has no output `{output}` (outputs: {known:?})")));
        }
        let policy = raw.get_ref();
        let bad = if policy.top_k.is_some_and(|k| k == 0 || k > 1_000_000) {
            Some("top_k must be 1 to 1000000")
        } else if policy.decimals.is_some_and(|d| d > 15) {
            Some("decimals must be 0 to 15")
        } else if policy.noise.is_some_and(|n| !(n.is_finite() && (0.0..=1e6).contains(&n))) {
            Some("noise (the Laplace scale) must be 0 to 1000000")
        } else {
            None
        };
        if let Some(why) = bad {
            return Err(place.at(raw, format!("{key}: {why}")));
        }
        let policy =
            OutputPolicy { top_k: policy.top_k, noise: policy.noise, decimals: policy.decimals, remove: policy.remove };
        policies.insert(output.clone(), policy);
    }
    Ok(policies)
}
