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

    /// `windows` windows of `n` rows each, and the rows left after them:
    /// every byte is copied once, however many windows a batch fills.
    fn split(self, n: usize, windows: usize) -> (Vec<Tensor>, Option<Rows>) {
        let row_bytes = self.tensor.data.len() / self.count.max(1);
        let taken = n * windows;
        let mut heads = Vec::with_capacity(windows);
        let window_bytes = n * row_bytes;
        for w in 0..windows {
            let mut shape = self.tensor.shape.clone();
            shape[0] = n as u64;
            let data = self.tensor.data[w * window_bytes..(w + 1) * window_bytes].to_vec();
            heads.push(Tensor { name: self.tensor.name.clone(), datatype: self.tensor.datatype, shape, data });
        }
        let tail = (self.count > taken).then(|| {
            let mut tensor = self.tensor.clone();
            tensor.data = self.tensor.data[taken * row_bytes..].to_vec();
            tensor.shape[0] = (self.count - taken) as u64;
            Rows { count: self.count - taken, tensor }
        });
        (heads, tail)
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

    /// Bytes of the rows gathered so far.
    pub fn bytes(&self) -> usize {
        self.edges.iter().flatten().map(|r| r.tensor.data.len()).sum()
    }

    /// When `n` rows are there: the first `n` of each edge (the rest stay).
    pub fn take(&mut self, n: usize) -> Option<Vec<Tensor>> {
        self.take_windows(n, 1).pop()
    }

    /// As many whole windows of `n` rows as are there, at most `most`; the
    /// rest stay.
    pub fn take_windows(&mut self, n: usize, most: usize) -> Vec<Vec<Tensor>> {
        let windows = self.rows().checked_div(n).unwrap_or(0).min(most);
        if windows == 0 {
            return Vec::new();
        }
        let mut out: Vec<Vec<Tensor>> = (0..windows).map(|_| Vec::with_capacity(self.edges.len())).collect();
        for edge in self.edges.iter_mut() {
            let Some(rows) = edge.take() else { continue };
            let (heads, tail) = rows.split(n, windows);
            for (window, head) in out.iter_mut().zip(heads) {
                window.push(head);
            }
            *edge = tail;
        }
        out
    }

    /// Every row gathered, as one (short) window; nothing stays.
    pub fn take_all(&mut self) -> Option<Vec<Tensor>> {
        let n = self.rows();
        let window = self.take(n);
        self.edges.iter_mut().for_each(|e| *e = None);
        window
    }

    /// Drop every row gathered (rows that could not be stacked whole).
    pub fn clear(&mut self) {
        self.edges.iter_mut().for_each(|e| *e = None);
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

    #[test]
    fn a_big_batch_is_cut_into_whole_windows_at_most_as_asked() {
        let mut g = Gathering::new(1);
        let values: Vec<f32> = (0..10).map(|v| v as f32).collect();
        g.add(&[fp32("x", vec![10], &values)]).unwrap();
        let windows = g.take_windows(3, 2);
        assert_eq!(windows.len(), 2);
        assert_eq!(weir_core::tensor_json::numbers(&windows[1][0]), [3., 4., 5.]);
        assert_eq!((g.rows(), g.bytes()), (4, 16));
        assert_eq!(g.take_windows(3, 5).len(), 1);
        assert_eq!(weir_core::tensor_json::numbers(&g.take_all().unwrap()[0]), [9.]);
        assert_eq!(g.rows(), 0);
    }
}
