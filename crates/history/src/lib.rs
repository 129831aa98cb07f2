//! History checkers for the systems Agora runs: is what clients saw
//! explainable by one sequential order?
//!
//! * [`linear`]: linearizability against a sequential [`linear::Model`],
//!   Wing–Gong search with just-in-time linearisation and a cache of
//!   explored (set, state) pairs, as Porcupine does; [`history`] checks
//!   each key on its own (linearizability is P-compositional);
//! * [`models`]: a read/write/cas register (Jepsen's etcd test) and a
//!   get/put/append key–value store (Porcupine's kv test);
//! * [`edn`]: the EDN that Jepsen's histories are written in;
//! * [`generate`]: histories linearizable by construction, for tests and
//!   benchmarks.
//!
//! Behind `agora history check FILE --model register|kv`.

pub mod edn;
pub mod generate;
pub mod history;
pub mod linear;
pub mod models;

pub use history::{check, Format, HistoryError, ModelKind, Report};
