//! Rows of monitored edges, gathered into windows: each edge's tensors
//! are stacked along their first dimension (the batch).

use weir_core::tensor::element_size;
use weir_core::Tensor;

/// Stacked rows of one edge.
#[derive(Debug, Clone)]
pub struct Rows {
    pub tensor: Tensor,
    pub count: usize,
}

impl Rows {
    fn of(tensor: &Tensor) -> Option<Rows> {
        let count = *tensor.shape.first()? as usize;
        element_size(tensor.datatype)?;
        Some(Rows { tensor: tensor.clone(), count })
    }

    /// Append a tensor of the same datatype and row shape.
    fn push(&mut self, tensor: &Tensor) -> bool {
        if tensor.datatype != self.tensor.datatype
            || tensor.shape.len() != self.tensor.shape.len()
            || tensor.shape[1..] != self.tensor.shape[1..]
        {
            return false;
        }
        self.tensor.data.extend_from_slice(&tensor.data);
        self.count += tensor.shape[0] as usize;
        self.tensor.shape[0] = self.count as u64;
        true
    }

    /// The first `n` rows, and the rest.
    fn split(mut self, n: usize) -> (Rows, Option<Rows>) {
        if n >= self.count {
            return (self, None);
        }
        let row_bytes = self.tensor.data.len() / self.count.max(1);
        let rest = self.tensor.data.split_off(n * row_bytes);
        let mut tail = self.tensor.clone();
        tail.data = rest;
        tail.shape[0] = (self.count - n) as u64;
        let tail = Rows { count: self.count - n, tensor: tail };
        self.count = n;
        self.tensor.shape[0] = n as u64;
        (self, Some(tail))
    }
}

/// Why an invocation's edges were not added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch(pub String);

/// Edges gathered until a window is full.
#[derive(Debug, Default)]
pub struct Gathering {
    /// One entry per monitored edge, in the monitor's input order.
    edges: Vec<Option<Rows>>,
}

impl Gathering {
    pub fn new(edges: usize) -> Self {
        Gathering { edges: vec![None; edges] }
    }

    pub fn rows(&self) -> usize {
        self.edges.iter().map(|e| e.as_ref().map_or(0, |r| r.count)).min().unwrap_or(0)
    }

    /// Add one invocation's tensors (one per edge, same batch). A tensor
    /// that does not stack (other datatype or row shape, no batch, BYTES) is refused.
    pub fn add(&mut self, tensors: &[Tensor]) -> Result<(), Mismatch> {
        let batch = tensors.first().and_then(|t| t.shape.first()).copied();
        if tensors.len() != self.edges.len() || tensors.iter().any(|t| t.shape.first().copied() != batch) {
            return Err(Mismatch("the edges of one invocation must share their first dimension".into()));
        }
        let fits = tensors.iter().zip(&self.edges).all(|(t, e)| match e {
            None => Rows::of(t).is_some(),
            Some(rows) => {
                t.datatype == rows.tensor.datatype
                    && t.shape.len() == rows.tensor.shape.len()
                    && t.shape[1..] == rows.tensor.shape[1..]
            }
        });
        if !fits {
            let names: Vec<String> =
                tensors.iter().map(|t| format!("{} {} {:?}", t.name, t.datatype, t.shape)).collect();
            return Err(Mismatch(format!(
                "{names:?} do not stack with the window's rows (numbers with a batch dimension)"
            )));
        }
        for (tensor, edge) in tensors.iter().zip(self.edges.iter_mut()) {
            match edge {
                None => *edge = Rows::of(tensor),
                Some(rows) => {
                    rows.push(tensor);
                }
            }
        }
        Ok(())
    }

    /// When `n` rows are there: the first `n` of each edge (the rest stay).
    pub fn take(&mut self, n: usize) -> Option<Vec<Tensor>> {
        if self.rows() < n || n == 0 {
            return None;
        }
        let mut window = Vec::with_capacity(self.edges.len());
        for edge in self.edges.iter_mut() {
            let (head, tail) = edge.take()?.split(n);
            window.push(head.tensor);
            *edge = tail;
        }
        Some(window)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_core::Datatype;

    fn fp32(name: &str, shape: Vec<u64>, values: &[f32]) -> Tensor {
        Tensor {
            name: name.into(),
            datatype: Datatype::Fp32,
            shape,
            data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }

    #[test]
    fn rows_stack_into_windows_of_exactly_n_and_the_rest_waits() {
        let mut g = Gathering::new(2);
        g.add(&[fp32("x", vec![2, 2], &[1., 2., 3., 4.]), fp32("c", vec![2], &[9., 8.])]).unwrap();
        assert!(g.take(3).is_none());
        g.add(&[fp32("x", vec![2, 2], &[5., 6., 7., 8.]), fp32("c", vec![2], &[7., 6.])]).unwrap();
        let window = g.take(3).unwrap();
        assert_eq!(window[0].shape, vec![3, 2]);
        assert_eq!(window[1].shape, vec![3]);
        assert_eq!(weir_core::tensor_json::numbers(&window[1]), [9., 8., 7.]);
        assert_eq!(g.rows(), 1);
        assert!(g.add(&[fp32("x", vec![1, 3], &[0.; 3]), fp32("c", vec![1], &[0.])]).is_err(), "row shape changed");
        assert!(g.add(&[fp32("x", vec![1, 2], &[0.; 2]), fp32("c", vec![2], &[0.; 2])]).is_err(), "batches differ");
    }
}
