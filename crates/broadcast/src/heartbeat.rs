//! A heartbeat failure detector: the reference service composed beside
//! broadcast on one node (see [`crate::monitored`]).
//!
//! Every node sends `Beat` to every peer each `interval`; a peer not heard
//! from for `timeout` is suspected (`Suspect` output), and trusted again
//! (`Trust`) when its next beat arrives. A fixed timeout, deliberately
//! simple: the telecom system's phi-accrual detector replaces it there.

use agora_core::{duration_str, Io, Message, NodeId, Protocol, Time};
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Set by the driver.
    #[serde(skip)]
    pub nodes: u32,
    #[serde(default = "default_interval", with = "duration_str")]
    pub interval: Duration,
    #[serde(default = "default_timeout", with = "duration_str")]
    pub timeout: Duration,
}

fn default_interval() -> Duration {
    Duration::from_millis(100)
}
fn default_timeout() -> Duration {
    Duration::from_millis(500)
}

impl Default for Config {
    fn default() -> Self {
        Config { nodes: 0, interval: default_interval(), timeout: default_timeout() }
    }
}

impl Config {
    pub fn validate(&self) -> Result<(), String> {
        if self.interval.is_zero() {
            return Err("interval: must be longer than zero".into());
        }
        if self.timeout <= self.interval {
            return Err(format!("timeout: {:?} must be longer than the interval {:?}", self.timeout, self.interval));
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Msg {
    Beat,
}

impl Message for Msg {
    fn kind(&self) -> &'static str {
        "beat"
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Timer {
    Beat,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Output {
    Suspect(NodeId),
    Trust(NodeId),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Heartbeat {
    cfg: Config,
    me: NodeId,
    last_heard: Vec<Time>,
    suspected: Vec<bool>,
}

impl Heartbeat {
    pub fn new(cfg: Config, me: NodeId) -> Self {
        let n = cfg.nodes as usize;
        Heartbeat { cfg, me, last_heard: vec![Time::ZERO; n], suspected: vec![false; n] }
    }
    pub fn is_suspected(&self, peer: NodeId) -> bool {
        self.suspected.get(peer.index()).copied().unwrap_or(false)
    }
    pub fn suspected(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.suspected.iter().enumerate().filter(|(_, &s)| s).map(|(i, _)| NodeId(i as u32))
    }
}

impl Protocol for Heartbeat {
    type Msg = Msg;
    type Timer = Timer;
    type Input = ();
    type Output = Output;

    fn on_start(&mut self, io: &mut Io<'_, Self>) {
        // Everyone gets a full timeout from (re)start before being suspected.
        self.last_heard.iter_mut().for_each(|t| *t = io.now());
        self.on_timer(Timer::Beat, io);
    }

    fn on_message(&mut self, from: NodeId, Msg::Beat: Msg, io: &mut Io<'_, Self>) {
        let Some(t) = self.last_heard.get_mut(from.index()) else {
            io.count("beat_from_unknown_node", 1);
            return;
        };
        *t = io.now();
        if std::mem::replace(&mut self.suspected[from.index()], false) {
            io.output(Output::Trust(from));
        }
    }

    fn on_timer(&mut self, Timer::Beat: Timer, io: &mut Io<'_, Self>) {
        let now = io.now();
        for p in (0..self.cfg.nodes).map(NodeId).filter(|&p| p != self.me) {
            io.send(p, Msg::Beat);
            let i = p.index();
            if !self.suspected[i] && now - self.last_heard[i] > self.cfg.timeout {
                self.suspected[i] = true;
                io.count("suspicions", 1);
                io.output(Output::Suspect(p));
            }
        }
        io.set_timer(self.cfg.interval, Timer::Beat);
    }

    fn status(&self) -> serde_json::Value {
        serde_json::json!({"suspected": self.suspected().map(|p| p.0).collect::<Vec<_>>()})
    }
}
