//! The Python package (`crates/py`, built with maturin) passes its pytest
//! suite. `.ci/run` builds it into a virtualenv and sets `AGORA_PYTHON` to
//! that interpreter and `AGORA_REQUIRE_PYTHON`, so there the suite cannot
//! skip; elsewhere it runs when `AGORA_PYTHON` names an interpreter that has
//! the package (`maturin develop -m crates/py/Cargo.toml`).

#[test]
fn the_python_api_passes_its_tests() {
    let Some(python) = std::env::var_os("AGORA_PYTHON") else {
        assert!(
            std::env::var_os("AGORA_REQUIRE_PYTHON").is_none(),
            "AGORA_REQUIRE_PYTHON is set but AGORA_PYTHON names no interpreter"
        );
        eprintln!("SKIPPED: set AGORA_PYTHON to a Python with the agora package (maturin develop) to run its tests");
        return;
    };
    let tests = format!("{}/../py/tests", env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new(&python)
        .args(["-m", "pytest", "-q", &tests])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python:?}: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "pytest failed:\n{text}");
    assert!(text.contains(" passed"), "{text}");
}
