//! The protocol model every Agora protocol is written against.
//!
//! A protocol is a deterministic, sans-IO state machine: it is handed events
//! (start, message, timer, input) together with an [`Io`] context, and answers
//! by pushing [`Command`]s (send, set/cancel timer, emit output, count a
//! metric) into it. It never touches a socket, a clock, a thread or a global
//! random number generator: time and randomness come from the driver through
//! [`Io`]. The same protocol value therefore runs unchanged in the
//! deterministic simulator (`agora-sim`) and on the tokio TCP runtime
//! (`agora-net`).
//!
//! Messages cross the wire with one compact, versioned encoding: see [`wire`].
//!
//! Beyond messages and timers, a protocol gets three capabilities from its
//! driver: several services composed on one node ([`service`],
//! [`compose!`]), durable storage ([`storage`]: put, append, sync, restore),
//! and signatures ([`keys`]).

/// So that `compose!`'s generated paths resolve in this crate's own tests.
#[cfg(test)]
extern crate self as agora_core;

pub mod config_file;
pub mod duration_str;
mod id;
mod io;
pub mod keys;
mod protocol;
pub mod reading;
pub mod service;
pub mod storage;
mod time;
pub mod wire;

pub use id::NodeId;
pub use io::{Command, Io};
pub use protocol::{Message, Protocol};
pub use time::Time;

/// Asks the CPU to bring `value` into the cache: a hint for
/// [`Protocol::prefetch`] and the simulator, with no effect on behaviour
/// (a no-op off x86-64).
#[inline(always)]
pub fn prefetch<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let p = value as *const T as *const i8;
        // SAFETY: SSE is part of the x86-64 baseline, and a prefetch reads
        // nothing and cannot fault, whatever the address.
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>(p);
            if std::mem::size_of::<T>() > 64 {
                _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(64));
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}

/// Re-exported so protocol crates name the same RNG traits as the drivers.
pub use rand;
/// Re-exported for [`compose!`]'s generated code.
pub use serde;
pub use serde_json;
