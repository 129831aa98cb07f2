"""The seed's Python API over the Rust simulator (crates/py)."""

import pytest

from agora import (
    FailureInjector,
    LoadBalancerSimulation,
    RedundancyFailoverManager,
    SimulationConfig,
)


def quiet(duration=10.0, **kw):
    """A simulation of the default topology without its fault plan."""
    return LoadBalancerSimulation(SimulationConfig(simulation_duration=duration, failure_injection_enabled=False, **kw))


def test_the_default_scenario_runs_with_every_failure_detected():
    sim = LoadBalancerSimulation(SimulationConfig(simulation_duration=30.0))
    result = sim.run_simulation()
    kinds = {f["kind"] for f in result["failures"]}
    assert kinds == {"crash", "omission", "byzantine", "partition"}
    assert all(f["detected_at_s"] is not None for f in result["failures"])
    assert result["requests"]["succeeded"] > 0
    state = sim.get_current_state()
    assert state["time_s"] == pytest.approx(30.0, abs=0.1)
    assert [n["node"] for n in state["nodes"]] == ["Edge1", "Edge2", "Core1", "Core2", "Cloud1"]


def test_the_strategy_changes_the_run():
    sim = quiet()
    sim.set_load_balancing_strategy("RESOURCE_AWARE")
    assert sim.get_current_state()["strategy"] == "resource_aware"
    a = sim.run_simulation()
    sim.set_load_balancing_strategy("LoadBalancingStrategy.WEIGHTED_ROUND_ROBIN")
    b = sim.run_simulation()
    assert a["load_balancing"]["strategy"] == "resource_aware"
    assert b["load_balancing"]["strategy"] == "weighted_round_robin"
    with pytest.raises(ValueError, match="unknown strategy"):
        sim.set_load_balancing_strategy("FASTEST")


def test_the_injector_adds_faults_that_are_detected():
    sim = LoadBalancerSimulation(SimulationConfig(simulation_duration=12.0))
    # Only the injected faults: drop the default plan by running a copy of it first.
    inj = FailureInjector(sim)
    inj.inject_crash_failure("Core2", duration=3.0, at=1.5)
    inj.inject_omission_failure("Cloud1", drop_rate=0.6, at=1.0, duration=8.0)
    inj.inject_byzantine_failure("Core1", "equivocate", at=2.0)
    failures = sim.run_simulation()["failures"]
    injected = {(f["node"], f["kind"]) for f in failures}
    assert {("Core2", "crash"), ("Cloud1", "omission"), ("Core1", "byzantine")} <= injected
    for f in failures:
        if f["node"] == "Core2" and f["injected_at_s"] == pytest.approx(1.5):
            assert f["detection_s"] is not None and f["detection_s"] < 1.0


def test_bad_injections_name_what_is_wrong():
    sim = LoadBalancerSimulation(SimulationConfig(simulation_duration=5.0))
    inj = FailureInjector(sim)
    with pytest.raises(ValueError, match='no node "Core9"'):
        inj.inject_crash_failure("Core9", duration=1.0)
    with pytest.raises(ValueError, match="drop_rate"):
        inj.inject_omission_failure("Edge2", drop_rate=1.5)
    with pytest.raises(ValueError, match="behavior"):
        inj.inject_byzantine_failure("Core1", "lie")
    with pytest.raises(ValueError, match="outside the simulation"):
        inj.inject_crash_failure("Edge1", duration=1.0, at=99.0)
    with pytest.raises(ValueError, match="disabled"):
        FailureInjector(quiet()).inject_crash_failure("Edge1", duration=1.0)
    with pytest.raises(ValueError, match="simulation_duration"):
        SimulationConfig(simulation_duration=-1.0)


def test_redundancy_follows_the_risk_assessment():
    manager = RedundancyFailoverManager()
    strategies = manager.configure_redundancy_from_risk_assessment([
        {"id": "Core1", "failure_probability": 0.4, "criticality": 0.95, "cascade_risk": 0.9,
         "dependency_count": 4, "failure_mode": "byzantine"},
        {"id": "Edge2", "failure_probability": 0.1, "criticality": 0.3, "cascade_risk": 0.2,
         "dependency_count": 1, "failure_mode": "omission"},
    ])
    assert strategies["Core1"] == "n-way-quorum"
    assert set(strategies) == {"Core1", "Edge2"}
    with pytest.raises(ValueError, match=r"nodes\[0\]: missing field `failure_probability`"):
        manager.configure_redundancy_from_risk_assessment([{"id": "x"}])


def test_failover_and_multi_node_failure():
    sim = LoadBalancerSimulation(SimulationConfig(simulation_duration=30.0))
    sim.run_simulation()
    manager = RedundancyFailoverManager()
    event = manager.implement_automated_failover("Edge1", sim.get_current_state())
    # Edge1 serves rpc, load_balancer and (the fourth member) transactions.
    assert event is not None and event["service"] in {"rpc", "load_balancer", "transactions"} and event["from"] == "Edge1"
    assert manager.implement_automated_failover("Nowhere", sim.get_current_state()) is None

    scenario = manager.simulate_multi_node_failure(2, quiet(8.0))
    # The seed's priority order: Core1 (0.95), then Core2 (0.90).
    assert scenario["failed"] == ["Core1", "Core2"]
    detected = {f["node"] for f in scenario["failures"] if f["detected_at_s"] is not None}
    assert detected == {"Core1", "Core2"}
    # Failures a client learns of together are failed over in criticality order.
    batches = {}
    for f in scenario["failovers"]:
        batches.setdefault((f["by"], f["at_s"], f["service"]), []).append(f["from"])
    rank = {"Core1": 0, "Core2": 1, "Cloud1": 2, "Edge1": 3, "Edge2": 4}  # by criticality
    assert scenario["failovers"]
    for froms in batches.values():
        assert froms == sorted(froms, key=rank.get), froms
