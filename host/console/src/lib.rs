//! The web console's server side. It knows nothing of HTTP: the HTTP
//! trigger serves [`assets`] and answers the console's API from
//! [`layout()`] (each pipeline's graph, laid out for drawing) and a
//! [`Board`] (live traffic per step and per edge, and receipt history,
//! fed by the executor's invocation events).

pub mod assets;
pub mod board;
pub mod layout;
mod series;

pub use board::{Board, LiveSnapshot, ReceiptHistory};
pub use layout::{layout, GraphLayout};
