//! A protocol's own HTTP endpoints beside the node's (the telecom client
//! API's `/kv`, say): the protocol's runner hands [`crate::start_with`] an
//! [`Api`] — its routes, built around a [`Caller`], and their list for
//! `GET /`. Every one of them needs the control token, reads too: they
//! act for a client of the system, not for an observer.
//!
//! A [`Caller`] hands the event loop an input that carries a call number
//! and waits for the output that answers it ([`agora_core::Protocol::answers`]).

use crate::shared::LoopMsg;
use agora_core::Protocol;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// One endpoint as `GET /` lists it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Endpoint {
    pub method: &'static str,
    pub path: &'static str,
    pub what: &'static str,
}

/// A protocol's endpoints: the routes, made once the node's event loop
/// exists, and their list.
pub struct Api<P: Protocol> {
    pub endpoints: Vec<Endpoint>,
    pub routes: Box<dyn FnOnce(Caller<P>) -> axum::Router + Send>,
}

/// Why a call got no answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("the node is stopping")]
    Stopping,
    /// The protocol cannot act on the input ([`Protocol::check_input`]).
    #[error("{0}")]
    Refused(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// Hands the event loop inputs that wait for an answer.
pub struct Caller<P: Protocol> {
    tx: mpsc::UnboundedSender<LoopMsg<P>>,
    next: Arc<AtomicU64>,
}

impl<P: Protocol> Clone for Caller<P> {
    fn clone(&self) -> Self {
        Caller { tx: self.tx.clone(), next: self.next.clone() }
    }
}

impl<P: Protocol> Caller<P> {
    pub(crate) fn new(tx: mpsc::UnboundedSender<LoopMsg<P>>) -> Self {
        Caller { tx, next: Arc::new(AtomicU64::new(1)) }
    }

    /// Hands over the input `make(call)` and waits up to `within` for the
    /// output that answers `call`.
    pub async fn call(&self, make: impl FnOnce(u64) -> P::Input, within: Duration) -> Result<P::Output, CallError> {
        let call = self.next.fetch_add(1, Ordering::Relaxed);
        let (reply, answer) = oneshot::channel();
        self.tx.send(LoopMsg::Call { input: make(call), call, reply }).map_err(|_| CallError::Stopping)?;
        match tokio::time::timeout(within, answer).await {
            Ok(Ok(Ok(output))) => Ok(output),
            Ok(Ok(Err(why))) => Err(CallError::Refused(why)),
            Ok(Err(_)) => Err(CallError::Stopping),
            Err(_) => Err(CallError::Timeout(within)),
        }
    }
}
