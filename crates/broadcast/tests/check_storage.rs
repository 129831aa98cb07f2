//! The durable register under the model checker with crashes: stateright
//! crashes the server at any point and restarts it from its durable state.
//! Acknowledging after the sync keeps every acknowledged write in every
//! reachable state; acknowledging before it is caught with a counterexample.

use agora_broadcast::register::{check_acknowledged_kept, Config, Register, SERVER};
use agora_check::stateright::actor::{ActorModel, LossyNetwork, Network};
use agora_check::stateright::{Checker, Expectation, Model};
use agora_check::Checked;

fn model(ack_before_sync: bool) -> ActorModel<Checked<Register>, ()> {
    let cfg = Config { writes: 2, ack_before_sync, ..Config::new(2) };
    let actor = Checked::new(move |id| Register::new(cfg.clone(), id));
    ActorModel::new((), ())
        .actors([actor.clone(), actor])
        // A set of messages: a retried write is the same message, so the
        // space stays finite; losses are explored too.
        .init_network(Network::new_unordered_duplicating([]))
        .lossy_network(LossyNetwork::Yes)
        .max_crashes(1)
        .property(Expectation::Always, "acknowledged writes kept", |_, s| {
            check_acknowledged_kept(2, |id| &s.actor_states[id.index()].proto, !s.crashed[SERVER.index()]).is_ok()
        })
        .property(Expectation::Sometimes, "both writes acknowledged", |_, s| s.actor_states[1].acked.len() == 2)
}

#[test]
fn acknowledging_after_the_sync_survives_a_crash_anywhere() {
    let checker = model(false).checker().spawn_bfs().join();
    checker.assert_properties();
    let states = checker.unique_state_count();
    eprintln!("register, 1 client, 2 writes, 1 crash: {states} unique states, properties hold");
    assert!(states > 100, "a real state space ({states} states)");
}

#[test]
fn acknowledging_before_the_sync_loses_a_write_in_some_interleaving() {
    let checker = model(true).checker().spawn_bfs().join();
    let path = checker.discovery("acknowledged writes kept").expect("a counterexample");
    eprintln!("counterexample of {} steps", path.into_actions().len());
}
