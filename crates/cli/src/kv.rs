//! `agora kv get|put|cas`: one request to a running telecom cluster's
//! client API (`/kv`, see `kv_api.rs`), with the control token of its
//! cluster file. The answer's JSON goes to stdout; exit status 0 when the
//! request succeeded, 1 when a compare-and-set found another value, 2 on
//! an error (said on stderr).

use agora_net::ClusterFile;
use agora_telecom::topology::{Params, Topology};
use anyhow::{bail, Context, Result};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(clap::Subcommand, Debug)]
pub enum KvCmd {
    /// Read a key: its value and version.
    Get(Target),
    /// Write a key.
    Put {
        #[command(flatten)]
        target: Target,
        /// The value to write (text).
        value: String,
    },
    /// Compare-and-set: write VALUE if the key holds EXPECTED.
    Cas {
        #[command(flatten)]
        target: Target,
        /// The value the key must hold.
        #[arg(long)]
        expected: String,
        /// The value to write if the key holds --expected.
        value: String,
    },
}

#[derive(clap::Args, Debug)]
pub struct Target {
    /// The cluster file (TOML); `agora cluster up` prints the one it runs.
    #[arg(long)]
    pub cluster: PathBuf,
    /// The node to ask: its name in the cluster file or in the telecom
    /// topology (default: the first client node).
    #[arg(long)]
    pub node: Option<String>,
    /// The group: a service name (`rpc`) or an index.
    pub group: String,
    /// The key, within the group.
    pub key: String,
}

pub fn kv(cmd: KvCmd) -> Result<bool> {
    let (target, method, suffix, body) = match &cmd {
        KvCmd::Get(t) => (t, "GET", "", String::new()),
        KvCmd::Put { target, value } => (target, "PUT", "", value.clone()),
        KvCmd::Cas { target, expected, value } => {
            (target, "POST", "/cas", serde_json::json!({ "expected": expected, "value": value }).to_string())
        }
    };
    let (addr, token) = node_of(target)?;
    let path = format!("/kv/{}/{}{suffix}", encode(&target.group), encode(&target.key));
    let (code, answer) =
        agora_net::probe::request_with_token(addr, method, &path, Some(&body), Some(&token), Duration::from_secs(40))
            .with_context(|| format!("{method} {path} on {addr}: the node did not answer"))?;
    let json: Option<serde_json::Value> = serde_json::from_str(&answer).ok();
    match (code, json) {
        (200 | 409, Some(j)) => {
            println!("{}", serde_json::to_string_pretty(&j)?);
            Ok(code == 200)
        }
        (_, Some(j)) if j["error"].is_string() => {
            let cause = j["cause"].as_str().map(|c| format!(" [{c}]")).unwrap_or_default();
            bail!("{} (HTTP {code}){cause}", j["error"].as_str().unwrap_or_default())
        }
        _ => bail!("HTTP {code}: {}", answer.trim()),
    }
}

/// The HTTP address of the node to ask and the cluster's control token.
fn node_of(t: &Target) -> Result<(SocketAddr, String)> {
    let cf = ClusterFile::<Params>::load(&t.cluster)?;
    if cf.protocol != "telecom" {
        bail!("{}: runs {}, not telecom: it has no key-value API", cf.path, cf.protocol);
    }
    let topo: Topology = cf.params.compile().map_err(|e| anyhow::anyhow!("{}: params: {e}", cf.path))?;
    let index = match &t.node {
        Some(name) => cf
            .node
            .iter()
            .position(|n| &n.name == name)
            .or_else(|| (0..topo.len()).find(|&i| topo.name(agora_core::NodeId(i as u32)) == name))
            .with_context(|| {
                // A few names, not a million.
                const SHOWN: usize = 5;
                let mut names: Vec<String> = cf
                    .node
                    .iter()
                    .take(SHOWN)
                    .enumerate()
                    .map(|(i, n)| match topo.len() > i {
                        true => format!("{} ({})", n.name, topo.name(agora_core::NodeId(i as u32))),
                        false => n.name.clone(),
                    })
                    .collect();
                if cf.node.len() > SHOWN {
                    names.push("…".into());
                }
                format!("{}: no node {name}; its {} nodes are {}", cf.path, cf.node.len(), names.join(", "))
            })?,
        None => (0..topo.len()).find(|&i| topo.clients[i]).context("the topology has no client node")?,
    };
    let n = cf.node.get(index).with_context(|| format!("{}: node {index} is not in the file", cf.path))?;
    let addr = n.http.with_context(|| format!("{}: node {} has no `http` address", cf.path, n.name))?;
    let Some(file) = &cf.security.token_file else {
        bail!("{}: [security] names no token_file; the key-value API needs the control token", cf.path);
    };
    let token = agora_net::security::read_secret_file(file, cf.security.loose_key_files)
        .map_err(|e| anyhow::anyhow!("{}: token_file: {e}", cf.path))?;
    Ok((addr, token.trim().to_string()))
}

/// Percent-encodes a path segment (RFC 3986: unreserved characters pass).
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn path_segments_are_percent_encoded() {
        assert_eq!(super::encode("k1"), "k1");
        assert_eq!(super::encode("a/b c%é"), "a%2Fb%20c%25%C3%A9");
    }
}
