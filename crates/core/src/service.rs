//! Several services on one node: each service is a [`Protocol`] of its own
//! (its own `Msg`, `Timer`, `Input`, `Output`, counters, storage), and
//! [`compose!`](crate::compose) makes one node protocol of them. The
//! simulator, the TCP runtime and the model checker then drive the composed
//! node unchanged.
//!
//! * The wire carries a service tag: the composed `Msg` is an enum with one
//!   variant per service, in declaration order, so postcard writes the
//!   variant index first. A frame with a tag the node does not host is
//!   refused by the transport as `unknown_service` (see
//!   [`Message::services`](crate::Message::services)).
//! * Timers, outputs, counters, storage spaces and sync answers are tagged
//!   with the service and routed back to it.
//! * Services talk locally through a **route**: a function from a composed
//!   output to the composed inputs it makes (an `Option`, or a `Vec` when
//!   one output concerns several services). After a handler, each output it produced
//!   that the route maps is handed to the target service's `on_input` at
//!   once, in order, before any other event: no network hop, and the same
//!   order in every driver (the failure detector tells the transaction
//!   manager a peer is suspected; the RPC layer tells the load balancer a
//!   latency sample). A routed input's own outputs are routed in turn, up to
//!   [`MAX_LOCAL_HOPS`] per event (beyond, they are counted as
//!   `local_route_overflow` and dropped: a routing loop).
//! * An output is also the node's output (the simulator records it, a real
//!   node logs it) unless the optional `internal` predicate says it is
//!   plumbing between the node's services: then it is routed only.
//!
//! ```
//! # use agora_core::{compose, Io, Message, NodeId, Protocol};
//! # use serde::{Deserialize, Serialize};
//! # #[derive(Clone, Debug, Default, PartialEq, Eq, Hash)] pub struct Ping;
//! # #[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)] pub struct P;
//! # impl Message for P { fn kind(&self) -> &'static str { "p" } }
//! # impl Protocol for Ping {
//! #   type Msg = P; type Timer = (); type Input = u8; type Output = u8;
//! #   fn on_start(&mut self, _: &mut Io<'_, Self>) {}
//! #   fn on_message(&mut self, _: NodeId, _: P, _: &mut Io<'_, Self>) {}
//! #   fn on_timer(&mut self, _: (), _: &mut Io<'_, Self>) {}
//! # }
//! compose! {
//!     /// Two services on one node.
//!     #[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
//!     pub mod pair {
//!         left: Left = Ping,
//!         right: Right = Ping,
//!     }
//!     // Optional: what `left` outputs, `right` is told.
//!     route = to_right;
//! }
//! fn to_right(o: &pair::Output) -> Option<pair::Input> {
//!     match o { pair::Output::Left(x) => Some(pair::Input::Right(*x)), _ => None }
//! }
//! # fn main() {
//! let node = pair::Node::default();
//! # let _ = node;
//! # }
//! ```
//!
//! The generated module holds `Node` (a struct with one public field per
//! service), and the enums `Msg`, `Timer`, `Input`, `Output` with one variant
//! per service. Inputs and outputs are JSON objects keyed by the variant
//! name in snake case (`{"right": 7}`), so name each variant as its field in
//! CamelCase. Inside the generated module those five names shadow any of
//! the same name outside: give the services' types by paths that do not
//! start with them (`crate::Node`, not `Node`).

use crate::{Command, Io, Protocol};

/// Routed hops a single event may cause; more means a routing loop.
pub const MAX_LOCAL_HOPS: usize = 1024;

/// Runs one handler of service `service` (a field of a composed node) and
/// forwards its commands to the composed node's `io`, each wrapped in the
/// service's variant. Returns the service's outputs (wrapped) when `keep` is
/// set, for local routing; those `internal` says are the node's own business
/// (plumbing between its services) are returned only, not output.
#[allow(clippy::too_many_arguments)]
pub fn drive<O: Protocol, S: Protocol>(
    io: &mut Io<'_, O>,
    service: &'static str,
    state: &mut S,
    handler: impl FnOnce(&mut S, &mut Io<'_, S>),
    msg: fn(S::Msg) -> O::Msg,
    timer: fn(S::Timer) -> O::Timer,
    output: fn(S::Output) -> O::Output,
    keep: bool,
    internal: fn(&O::Output) -> bool,
) -> Vec<O::Output> {
    let mut out: Vec<Command<S>> = Vec::new();
    handler(state, &mut io.nested(&mut out));
    let mut kept = Vec::new();
    for cmd in out {
        io.push(match cmd {
            Command::Send { to, msg: m } => Command::Send { to, msg: msg(m) },
            Command::SetTimer { after, timer: t } => Command::SetTimer { after, timer: timer(t) },
            Command::CancelTimer { timer: t } => Command::CancelTimer { timer: timer(t) },
            Command::Output(o) => {
                let o = output(o);
                if keep && internal(&o) {
                    kept.push(o);
                    continue;
                }
                if keep {
                    kept.push(o.clone());
                }
                Command::Output(o)
            }
            Command::Count { service: s, name, by } => {
                Command::Count { service: if s.is_empty() { service } else { s }, name, by }
            }
            Command::Store(op) => Command::Store(op.in_service(service)),
        });
    }
    kept
}

/// Builds a node protocol from services; see the [module docs](self).
#[macro_export]
macro_rules! compose {
    (
        $(#[$meta:meta])*
        $vis:vis mod $module:ident {
            $( $field:ident : $Variant:ident = $Svc:ty ),+ $(,)?
        }
        $( route = $route:path ; )?
        $( internal = $internal:path ; )?
    ) => {
        $vis mod $module {
            #[allow(unused_imports)]
            use super::*;
            #[allow(unused_imports)] // unused when no service has messages
            use $crate::{Io, Message as _, NodeId, Protocol};

            $(#[$meta])*
            pub struct Node {
                $( pub $field: $Svc, )+
            }

            /// A message of one of the node's services; the variant is the wire's service tag.
            #[derive(Clone, Debug, PartialEq, Eq, Hash, $crate::serde::Serialize, $crate::serde::Deserialize)]
            #[serde(crate = "::agora_core::serde")]
            pub enum Msg { $( $Variant(<$Svc as Protocol>::Msg), )+ }

            #[derive(Clone, Debug, PartialEq, Eq, Hash)]
            pub enum Timer { $( $Variant(<$Svc as Protocol>::Timer), )+ }

            /// Serializable too, so a scenario can be written with typed inputs.
            #[derive(Debug, $crate::serde::Serialize, $crate::serde::Deserialize)]
            #[serde(crate = "::agora_core::serde", rename_all = "snake_case")]
            pub enum Input { $( $Variant(<$Svc as Protocol>::Input), )+ }

            #[derive(Clone, Debug, $crate::serde::Serialize)]
            #[serde(crate = "::agora_core::serde", rename_all = "snake_case")]
            pub enum Output { $( $Variant(<$Svc as Protocol>::Output), )+ }

            /// The service names, in wire-tag order.
            pub const SERVICES: &[&str] = &[ $( stringify!($field), )+ ];

            /// Whether the node has a route (else outputs are not kept for routing).
            const ROUTED: bool = $crate::compose!(@routed $($route)?);

            /// Whether `o` is plumbing between the node's services: routed, not output.
            #[allow(unused_variables)]
            fn internal(o: &Output) -> bool {
                $crate::compose!(@internal o, $($internal)?)
            }

            /// The inputs the route makes of `o` (an `Option` or any other
            /// iterable of inputs: one output may concern several services).
            #[allow(unused_variables)]
            fn route_into(o: &Output, queue: &mut std::collections::VecDeque<Input>) {
                $crate::compose!(@call o, queue, $($route)?);
            }

            impl $crate::Message for Msg {
                fn kind(&self) -> &'static str {
                    match self { $( Msg::$Variant(m) => m.kind(), )+ }
                }
                fn service(&self) -> &'static str {
                    match self { $( Msg::$Variant(_) => stringify!($field), )+ }
                }
                fn services() -> &'static [&'static str] {
                    SERVICES
                }
            }

            impl Node {
                /// Delivers the locally routed inputs that `outputs` give, and theirs in turn.
                pub fn route_locally(&mut self, io: &mut Io<'_, Self>, outputs: Vec<Output>) {
                    if !ROUTED {
                        return;
                    }
                    let mut queue = std::collections::VecDeque::new();
                    for o in &outputs {
                        route_into(o, &mut queue);
                    }
                    let mut hops = 0;
                    while let Some(input) = queue.pop_front() {
                        hops += 1;
                        if hops > $crate::service::MAX_LOCAL_HOPS {
                            io.count("local_route_overflow", 1 + queue.len() as u64);
                            return;
                        }
                        let produced = self.input_to_service(io, input);
                        for o in &produced {
                            route_into(o, &mut queue);
                        }
                    }
                }

                fn input_to_service(&mut self, io: &mut Io<'_, Self>, input: Input) -> Vec<Output> {
                    match input {
                        $( Input::$Variant(i) => $crate::service::drive(io, stringify!($field), &mut self.$field,
                            |s, io| s.on_input(i, io), Msg::$Variant, Timer::$Variant, Output::$Variant, ROUTED, internal), )+
                    }
                }
            }

            impl Protocol for Node {
                type Msg = Msg;
                type Timer = Timer;
                type Input = Input;
                type Output = Output;

                fn on_start(&mut self, io: &mut Io<'_, Self>) {
                    $(
                        let o = $crate::service::drive(io, stringify!($field), &mut self.$field,
                            |s, io| s.on_start(io), Msg::$Variant, Timer::$Variant, Output::$Variant, ROUTED, internal);
                        self.route_locally(io, o);
                    )+
                }
                fn on_recover(&mut self, io: &mut Io<'_, Self>) {
                    $(
                        let o = $crate::service::drive(io, stringify!($field), &mut self.$field,
                            |s, io| s.on_recover(io), Msg::$Variant, Timer::$Variant, Output::$Variant, ROUTED, internal);
                        self.route_locally(io, o);
                    )+
                }
                fn on_message(&mut self, from: NodeId, msg: Msg, io: &mut Io<'_, Self>) {
                    let o = match msg {
                        $( Msg::$Variant(m) => $crate::service::drive(io, stringify!($field), &mut self.$field,
                            |s, io| s.on_message(from, m, io), Msg::$Variant, Timer::$Variant, Output::$Variant, ROUTED, internal), )+
                    };
                    self.route_locally(io, o);
                }
                fn prefetch(&self, from: NodeId, msg: &Msg) {
                    match msg {
                        $( Msg::$Variant(m) => self.$field.prefetch(from, m), )+
                    }
                }
                fn on_timer(&mut self, timer: Timer, io: &mut Io<'_, Self>) {
                    let o = match timer {
                        $( Timer::$Variant(t) => $crate::service::drive(io, stringify!($field), &mut self.$field,
                            |s, io| s.on_timer(t, io), Msg::$Variant, Timer::$Variant, Output::$Variant, ROUTED, internal), )+
                    };
                    self.route_locally(io, o);
                }
                fn on_input(&mut self, input: Input, io: &mut Io<'_, Self>) {
                    let o = self.input_to_service(io, input);
                    self.route_locally(io, o);
                }
                fn check_input(&self, input: &Input) -> Result<(), String> {
                    match input {
                        $( Input::$Variant(i) => self.$field.check_input(i).map_err(|e| format!("{}: {e}", stringify!($field))), )+
                    }
                }
                fn on_restore(&mut self, disk: &$crate::storage::Durable) {
                    $( self.$field.on_restore(&disk.of_service(stringify!($field))); )+
                }
                fn on_synced(&mut self, done: $crate::storage::SyncDone, io: &mut Io<'_, Self>) {
                    let o = match done.service {
                        $( stringify!($field) => $crate::service::drive(io, stringify!($field), &mut self.$field,
                            |s, io| s.on_synced(done, io), Msg::$Variant, Timer::$Variant, Output::$Variant, ROUTED, internal), )+
                        _ => {
                            io.count("sync_for_unknown_service", 1);
                            Vec::new()
                        }
                    };
                    self.route_locally(io, o);
                }
                fn answers(output: &Output) -> Option<u64> {
                    match output {
                        $( Output::$Variant(o) => <$Svc as Protocol>::answers(o), )+
                    }
                }
                fn health(&self) -> Result<(), String> {
                    let sick: Vec<String> = [$( self.$field.health().map_err(|e| format!("{}: {e}", stringify!($field))) ),+]
                        .into_iter()
                        .filter_map(Result::err)
                        .collect();
                    if sick.is_empty() { Ok(()) } else { Err(sick.join("; ")) }
                }
                fn readings(&self, out: &mut Vec<$crate::reading::Reading>) {
                    $( self.$field.readings(out); )+
                }
                fn status(&self) -> $crate::serde_json::Value {
                    let mut m = $crate::serde_json::Map::new();
                    $( m.insert(stringify!($field).to_string(), self.$field.status()); )+
                    $crate::serde_json::Value::Object(m)
                }
            }
        }
    };
    (@routed $route:path) => { true };
    (@routed) => { false };
    (@call $o:ident, $q:ident, $route:path) => { $q.extend($route($o)) };
    (@call $o:ident, $q:ident, ) => {};
    (@internal $o:ident, $internal:path) => { $internal($o) };
    (@internal $o:ident, ) => { false };
}

#[cfg(test)]
mod tests {
    use crate::{Command, Io, Message, NodeId, Protocol, Time};
    use rand::SeedableRng;
    use serde::{Deserialize, Serialize};

    /// Outputs each input back, plus one (a counter passed along).
    #[derive(Clone, Debug, Default)]
    pub struct Echo {
        pub seen: Vec<u8>,
    }
    #[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
    pub enum Never {}
    impl Message for Never {
        fn kind(&self) -> &'static str {
            match *self {}
        }
    }
    impl Protocol for Echo {
        type Msg = Never;
        type Timer = ();
        type Input = u8;
        type Output = u8;
        fn on_start(&mut self, _: &mut Io<'_, Self>) {}
        fn on_message(&mut self, _: NodeId, m: Never, _: &mut Io<'_, Self>) {
            match m {}
        }
        fn on_timer(&mut self, _: (), _: &mut Io<'_, Self>) {}
        fn on_input(&mut self, x: u8, io: &mut Io<'_, Self>) {
            self.seen.push(x);
            if x < 3 {
                io.output(x + 1);
            }
        }
        /// An even output answers the call of its number.
        fn answers(o: &u8) -> Option<u64> {
            o.is_multiple_of(2).then_some(*o as u64)
        }
    }

    crate::compose! {
        pub mod trio {
            a: A = super::Echo,
            b: B = super::Echo,
            c: C = super::Echo,
        }
        route = fan_out;
        internal = plumbing;
    }

    /// What `a` outputs goes to both `b` and `c`; what they output, nowhere.
    fn fan_out(o: &trio::Output) -> Vec<trio::Input> {
        match o {
            trio::Output::A(x) => vec![trio::Input::B(*x), trio::Input::C(*x)],
            _ => Vec::new(),
        }
    }

    /// `a`'s outputs are the node's own business.
    fn plumbing(o: &trio::Output) -> bool {
        matches!(o, trio::Output::A(_))
    }

    #[test]
    fn one_output_reaches_several_services_and_plumbing_is_not_output() {
        let mut node = trio::Node { a: Echo::default(), b: Echo::default(), c: Echo::default() };
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let mut out = Vec::new();
        let mut io = Io::new(NodeId(0), Time::ZERO, &mut rng, &mut out);
        node.on_input(trio::Input::A(1), &mut io);
        assert_eq!((node.b.seen.clone(), node.c.seen.clone()), (vec![2], vec![2]));
        let outputs: Vec<String> = out
            .iter()
            .filter_map(|c| match c {
                Command::Output(o) => Some(format!("{o:?}")),
                _ => None,
            })
            .collect();
        assert_eq!(outputs, ["B(3)", "C(3)"], "a's output was routed, not output");
        // Which call an output answers is its service's to say.
        assert_eq!(<trio::Node as Protocol>::answers(&trio::Output::C(4)), Some(4));
        assert_eq!(<trio::Node as Protocol>::answers(&trio::Output::B(3)), None);
    }
}
