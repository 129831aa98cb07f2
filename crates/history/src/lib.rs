//! History checkers for the systems Agora runs: is what clients saw
//! explainable by one sequential order?
//!
//! * [`linear`]: linearizability against a sequential [`linear::Model`],
//!   Wing–Gong search with just-in-time linearisation and a cache of
//!   explored (set, state) pairs, as Porcupine does; [`history`] checks
//!   each key on its own (linearizability is P-compositional);
//! * [`models`]: a read/write/cas register (Jepsen's etcd test) and a
//!   get/put/append key–value store (Porcupine's kv test);
//! * [`serial`]: serializability of list-append transaction histories
//!   (Elle's workload): the version order from the reads, the ww/wr/rw
//!   dependency graph, a cycle and its Adya class;
//! * [`edn`]: the EDN that Jepsen's histories are written in;
//! * [`generate`]: histories linearizable by construction, for tests and
//!   benchmarks.
//!
//! Behind `agora history check FILE --model register|kv|list-append`.

pub mod edn;
pub mod generate;
pub mod history;
pub mod linear;
pub mod models;
pub mod serial;

pub use history::{check, Format, HistoryError, ModelKind, Report};
