//! The workspace's promise, checked: protocol crates depend on `agora-core`
//! only (plus pure libraries), and the drivers know no protocol. Read from
//! `cargo metadata`, so a new dependency that breaks the rule fails here.

use std::collections::BTreeMap;

/// Each workspace crate's normal (non-dev, non-build) dependencies on other
/// workspace crates.
fn workspace_deps() -> BTreeMap<String, Vec<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = format!("{}/../../Cargo.toml", env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline", "--manifest-path", &manifest])
        .output()
        .expect("cargo metadata runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let members: Vec<String> =
        meta["packages"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap().to_string()).collect();
    meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["kind"].is_null()) // normal dependencies only
                .map(|d| d["name"].as_str().unwrap().to_string())
                .filter(|d| members.contains(d))
                .collect();
            (p["name"].as_str().unwrap().to_string(), deps)
        })
        .collect()
}

#[test]
fn protocol_crates_depend_on_core_only_and_drivers_on_no_protocol() {
    let deps = workspace_deps();
    // Drivers, the experiments crate and the two front ends (the command
    // and the Python package) may depend on anything.
    let drivers = ["agora-sim", "agora-net", "agora-check", "agora-lab", "agora-cli", "agora-py"];
    let protocols: Vec<&String> = deps
        .keys()
        .filter(|c| !drivers.contains(&c.as_str()) && *c != "agora-core" && *c != "agora-fairdist")
        .collect();
    assert!(protocols.len() >= 3, "the protocol crates were found: {protocols:?}");
    // One protocol composes another, named here: the telecom system's
    // strong group is ordered by the PBFT crate (itself on core only).
    let composes = [("agora-telecom", "agora-pbft")];
    let mut broken = Vec::new();
    for p in &protocols {
        for d in &deps[*p] {
            if d != "agora-core" && !composes.contains(&(p.as_str(), d.as_str())) {
                broken.push(format!("{p} -> {d}"));
            }
        }
    }
    // The drivers run any protocol: none of them may name one.
    for d in ["agora-sim", "agora-net", "agora-check"] {
        for dep in &deps[d] {
            if protocols.contains(&dep) {
                broken.push(format!("{d} -> {dep}"));
            }
        }
    }
    assert!(broken.is_empty(), "dependencies that break the architecture: {broken:?}");
}
