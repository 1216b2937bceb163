//! Tensors as features: a point (the request, or a step's inputs) and its
//! baseline, both sets of named tensors of the same types and shapes. Every
//! element where the two differ is a feature; an element equal to its
//! baseline changes nothing, so its attribution is zero without evaluating
//! it. A coalition takes its features from the point and the rest from the
//! baseline, byte for byte, so any fixed-size datatype can be mixed.

use weir_core::tensor::{element_size, push_bytes_element, Datatype};
pub use weir_core::tensor_json::{encode, numbers};
use weir_core::Tensor;
use weir_observe::provenance::EdgeTensor;

use crate::ExplainError;

/// One feature: an element of one tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Feature {
    /// The tensor's name, with the element's index where the tensor has
    /// more than one (`driver[1]`, `input[0,7]` without the batch of one).
    pub name: String,
    /// The tensor the element belongs to.
    pub tensor: String,
    /// Flat (row-major) index of the element.
    pub element: usize,
    pub value: f64,
    pub baseline: f64,
}

/// A point, its baseline, and the features where they differ.
#[derive(Debug, Clone)]
pub struct Space {
    point: Vec<Tensor>,
    baseline: Vec<Tensor>,
    features: Vec<Feature>,
    /// (tensor index, byte range) of each feature.
    places: Vec<(usize, std::ops::Range<usize>)>,
}

impl Space {
    /// Pair every tensor of `point` with the baseline tensor of its name;
    /// more than `limit` differing elements is refused before any is named
    /// (a caller's large tensor must not become millions of features).
    pub fn new(point: Vec<Tensor>, baseline: &[Tensor], limit: usize) -> Result<Space, ExplainError> {
        let paired = pair(&point, baseline)?;
        let differing_count: usize =
            point.iter().zip(&paired).map(|(tensor, base)| differing(tensor, base).map_or(0, Iterator::count)).sum();
        if differing_count > limit {
            return Err(ExplainError::TooManyFeatures { features: differing_count, limit });
        }
        let (mut features, mut places) = (Vec::with_capacity(differing_count), Vec::with_capacity(differing_count));
        for (index, (tensor, base)) in point.iter().zip(&paired).enumerate() {
            let (Some(elements), Some(size)) = (differing(tensor, base), element_size(tensor.datatype)) else {
                continue;
            };
            let (values, bases) = (numbers(tensor), numbers(base));
            for element in elements {
                features.push(Feature {
                    name: element_name(tensor, element),
                    tensor: tensor.name.clone(),
                    element,
                    value: values[element],
                    baseline: bases[element],
                });
                places.push((index, element * size..(element + 1) * size));
            }
        }
        Ok(Space { point, baseline: paired, features, places })
    }

    pub fn features(&self) -> &[Feature] {
        &self.features
    }

    /// The point with the features outside `coalition` at their baseline.
    pub fn compose(&self, coalition: &[bool]) -> Vec<Tensor> {
        let mut tensors = self.point.clone();
        for ((tensor, range), &member) in self.places.iter().zip(coalition) {
            if !member {
                tensors[*tensor].data[range.clone()].copy_from_slice(&self.baseline[*tensor].data[range.clone()]);
            }
        }
        tensors
    }
}

/// The baseline tensor of each point tensor, checked to be of its type and
/// shape; a BYTES tensor (no elements to mix) must equal its baseline.
fn pair(point: &[Tensor], baseline: &[Tensor]) -> Result<Vec<Tensor>, ExplainError> {
    let mut paired = Vec::with_capacity(point.len());
    for tensor in point {
        let base = baseline.iter().find(|b| b.name == tensor.name).ok_or_else(|| ExplainError::Baseline {
            tensor: tensor.name.clone(),
            problem: "the baseline has no tensor of this name".into(),
        })?;
        if base.datatype != tensor.datatype || base.shape != tensor.shape {
            return Err(ExplainError::Baseline {
                tensor: tensor.name.clone(),
                problem: format!(
                    "the baseline is {} {:?}, the point {} {:?}",
                    base.datatype, base.shape, tensor.datatype, tensor.shape
                ),
            });
        }
        if element_size(tensor.datatype).is_none() && base.data != tensor.data {
            return Err(ExplainError::Baseline {
                tensor: tensor.name.clone(),
                problem: "BYTES elements cannot be features; give a baseline equal to the point".into(),
            });
        }
        paired.push(base.clone());
    }
    Ok(paired)
}

/// The flat indices of the elements where `tensor` and `base` differ, byte
/// for byte (none for BYTES tensors, checked equal by `pair`).
fn differing<'a>(tensor: &'a Tensor, base: &'a Tensor) -> Option<impl Iterator<Item = usize> + 'a> {
    let size = element_size(tensor.datatype)?;
    let elements = tensor.data.chunks_exact(size).zip(base.data.chunks_exact(size));
    Some(elements.enumerate().filter(|(_, (x, b))| x != b).map(|(element, _)| element))
}

/// `name[i,j]` for an element of a tensor with more than one element,
/// leaving out leading dimensions of one (a batch of one).
fn element_name(tensor: &Tensor, element: usize) -> String {
    let dims: Vec<u64> = tensor.shape.iter().copied().skip_while(|&d| d == 1).collect();
    if dims.iter().product::<u64>() <= 1 {
        return tensor.name.clone();
    }
    let mut rest = element as u64;
    let mut index = vec![0u64; dims.len()];
    for (i, d) in dims.iter().enumerate().rev() {
        index[i] = rest % d.max(&1);
        rest /= d.max(&1);
    }
    let index: Vec<String> = index.iter().map(u64::to_string).collect();
    format!("{}[{}]", tensor.name, index.join(","))
}

/// A recorded edge back as a tensor, when its data was kept.
pub fn recorded(edge: &EdgeTensor) -> Result<Tensor, ExplainError> {
    let unusable = |problem: &str| ExplainError::NotRecorded { edge: edge.name.clone(), problem: problem.into() };
    if edge.hmac_sha256.is_some() {
        return Err(unusable("it is sensitive: the record keeps only its keyed hash"));
    }
    let values = edge.data.as_ref().and_then(|d| d.as_array()).ok_or_else(|| {
        unusable("the record keeps only its hash (set `keep_tensors = true` under [provenance] to keep data)")
    })?;
    let datatype = weir_core::tensor::parse_datatype(&edge.datatype).ok_or_else(|| unusable("unknown datatype"))?;
    let data = if datatype == Datatype::Bytes {
        let mut data = Vec::new();
        for value in values {
            let bytes = match value {
                serde_json::Value::String(s) => s.as_bytes().to_vec(),
                serde_json::Value::Array(a) => a.iter().map(|b| b.as_u64().unwrap_or(0) as u8).collect(),
                _ => return Err(unusable("a BYTES element is neither text nor bytes")),
            };
            push_bytes_element(&mut data, &bytes);
        }
        data
    } else {
        let numbers: Vec<f64> = values
            .iter()
            .map(|v| match v {
                serde_json::Value::Bool(b) => f64::from(u8::from(*b)),
                other => other.as_f64().unwrap_or(f64::NAN),
            })
            .collect();
        encode(datatype, &numbers).ok_or_else(|| unusable("unknown datatype"))?
    };
    let tensor = Tensor { name: edge.name.clone(), datatype, shape: edge.shape.clone(), data };
    weir_core::tensor::validate(&tensor).map_err(|e| unusable(&e.to_string()))?;
    Ok(tensor)
}

/// The mean row of `tensors` (every row of every one whose datatype and
/// row shape match `like`'s; the first dimension is the batch), repeated to
/// `like`'s shape; `None` for BYTES or when no tensor matches.
pub fn row_mean(tensors: &[Tensor], like: &Tensor) -> Option<Tensor> {
    element_size(like.datatype)?;
    // Sized from the (validated) element count, never from the shape alone:
    // a tensor with no elements may claim any other dimension.
    let elements = weir_core::tensor::element_count(&like.shape)?;
    let batch = *like.shape.first()? as usize;
    if elements == 0 || batch == 0 {
        return None;
    }
    let row_shape = &like.shape[1..];
    let row_len = elements / batch;
    let mut sum = vec![0.0; row_len];
    let mut rows = 0usize;
    for tensor in tensors {
        if tensor.datatype != like.datatype || tensor.shape.get(1..).unwrap_or_default() != row_shape {
            continue;
        }
        for row in numbers(tensor).chunks_exact(row_len.max(1)) {
            for (s, v) in sum.iter_mut().zip(row) {
                *s += v;
            }
            rows += 1;
        }
    }
    if rows == 0 || like.shape.is_empty() {
        return None;
    }
    let mean: Vec<f64> = sum.iter().map(|s| s / rows as f64).collect();
    let values: Vec<f64> = (0..batch).flat_map(|_| mean.iter().copied()).collect();
    let data = encode(like.datatype, &values)?;
    Some(Tensor { name: like.name.clone(), datatype: like.datatype, shape: like.shape.clone(), data })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp32(name: &str, shape: Vec<u64>, values: &[f32]) -> Tensor {
        let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        Tensor { name: name.into(), datatype: Datatype::Fp32, shape, data }
    }

    #[test]
    fn features_are_the_elements_that_differ_and_coalitions_mix_them() {
        let point = vec![fp32("x", vec![1, 3], &[1.0, 2.0, 3.0]), fp32("d", vec![1], &[9.0])];
        let baseline = vec![fp32("d", vec![1], &[0.0]), fp32("x", vec![1, 3], &[1.0, 0.0, 0.0])];
        let space = Space::new(point, &baseline, 8).unwrap();
        let names: Vec<&str> = space.features().iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["x[1]", "x[2]", "d"]);
        let mixed = space.compose(&[true, false, false]);
        assert_eq!(numbers(&mixed[0]), [1.0, 2.0, 0.0]);
        assert_eq!(numbers(&mixed[1]), [0.0]);
    }

    #[test]
    fn mismatched_baselines_are_refused_with_the_tensor_named() {
        let point = vec![fp32("x", vec![1, 3], &[1.0, 2.0, 3.0])];
        let error = Space::new(point.clone(), &[fp32("x", vec![3], &[0.0; 3])], 8).unwrap_err().to_string();
        assert!(error.contains("`x`") && error.contains("[3]"), "{error}");
        assert!(Space::new(point.clone(), &[], 8).unwrap_err().to_string().contains("no tensor of this name"));
        let over = Space::new(point, &[fp32("x", vec![1, 3], &[0.0; 3])], 2).unwrap_err();
        assert!(matches!(over, ExplainError::TooManyFeatures { features: 3, limit: 2 }), "{over}");
    }

    #[test]
    fn means_and_records_round_trip() {
        let rows = [fp32("x", vec![1, 2], &[1.0, 2.0]), fp32("x", vec![2, 2], &[3.0, 6.0, 2.0, 4.0])];
        let m = row_mean(&rows, &fp32("x", vec![2, 2], &[0.0; 4])).unwrap();
        assert_eq!(numbers(&m), [2.0, 4.0, 2.0, 4.0]);
        let edge = EdgeTensor {
            name: "x".into(),
            datatype: "INT64".into(),
            shape: vec![2],
            sha256: None,
            hmac_sha256: None,
            data: Some(serde_json::json!([3, -4])),
        };
        assert_eq!(numbers(&recorded(&edge).unwrap()), [3.0, -4.0]);
        let sensitive = EdgeTensor { hmac_sha256: Some("ab".into()), data: None, ..edge };
        assert!(recorded(&sensitive).unwrap_err().to_string().contains("sensitive"));
    }
}
