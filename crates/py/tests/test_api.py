"""The seed's Python API over the Rust simulator (crates/py)."""

import json
import pathlib

import pytest

from agora import (
    BottleneckAnalysis,
    FailoverEvent,
    FailureEvent,
    FailureInjector,
    LoadBalancerSimulation,
    LoadBalancingStrategy,
    MultiNodeFailureScenario,
    RedundancyFailoverManager,
    RedundancyStrategy,
    RiskAssessment,
    SimulationConfig,
    SimulationResult,
    SimulationState,
    assess_risk,
    detect_deadlock,
    rank_bottlenecks,
    select_node,
)

SCENARIOS = pathlib.Path(__file__).resolve().parents[3] / "scenarios"


def quiet(duration=10.0, **kw):
    """A simulation of the default topology without its fault plan."""
    return LoadBalancerSimulation(SimulationConfig(simulation_duration=duration, failure_injection_enabled=False, **kw))


def test_the_default_scenario_runs_with_every_failure_detected():
    sim = LoadBalancerSimulation(SimulationConfig(simulation_duration=30.0))
    result = sim.run_simulation()
    assert isinstance(result, SimulationResult)
    assert all(isinstance(f, FailureEvent) for f in result.failures)
    assert {f.kind for f in result.failures} == {"crash", "omission", "byzantine", "partition"}
    assert all(f.detected_at_s is not None for f in result.failures)
    assert result.requests["succeeded"] > 0 and result["requests"] == result.requests
    assert result.to_dict()["failures"][0]["node"] == result.failures[0].node
    assert all(isinstance(f, FailoverEvent) and f.from_node for f in result.failovers)
    ranked = result.bottlenecks
    assert all(isinstance(b, BottleneckAnalysis) for b in ranked) and len(ranked) == 5
    assert [b.score for b in ranked] == sorted((b.score for b in ranked), reverse=True)
    state = sim.get_current_state()
    assert isinstance(state, SimulationState)
    assert state.time_s == pytest.approx(30.0, abs=0.1)
    assert [n["node"] for n in state.nodes] == ["Edge1", "Edge2", "Core1", "Core2", "Cloud1"]
    with pytest.raises(KeyError):
        result["nothing"]


def test_the_strategy_changes_the_run():
    sim = quiet()
    sim.set_load_balancing_strategy(LoadBalancingStrategy.RESOURCE_AWARE)
    assert sim.get_current_state().strategy == "resource_aware"
    a = sim.run_simulation()
    sim.set_load_balancing_strategy("LoadBalancingStrategy.WEIGHTED_ROUND_ROBIN")
    b = sim.run_simulation()
    assert a.load_balancing["strategy"] == "resource_aware"
    assert b.load_balancing["strategy"] == "weighted_round_robin"
    with pytest.raises(ValueError, match="unknown strategy"):
        sim.set_load_balancing_strategy("FASTEST")


def test_injected_faults_replace_the_scenarios_plan_unless_it_is_kept():
    def run(**kw):
        sim = LoadBalancerSimulation(SimulationConfig(simulation_duration=12.0, **kw))
        inj = FailureInjector(sim)
        inj.inject_crash_failure("Core2", duration=3.0, at=1.5)
        inj.inject_omission_failure("Cloud1", drop_rate=0.6, at=1.0, duration=8.0)
        inj.inject_byzantine_failure("Core1", "equivocate", at=2.0)
        return sim.run_simulation().failures

    failures = run()
    # Only the user's faults: the default plan crashes Edge1 at 3 s.
    assert {(f.node, f.kind) for f in failures} == {("Core2", "crash"), ("Cloud1", "omission"), ("Core1", "byzantine")}
    core2 = next(f for f in failures if f.node == "Core2")
    assert core2.injected_at_s == pytest.approx(1.5) and core2.detection_s is not None and core2.detection_s < 1.0
    kept = {(f.node, f.kind) for f in run(scenario_faults=True)}
    assert ("Edge1", "crash") in kept and ("Core2", "crash") in kept
    # Without injected faults the scenario's plan runs.
    plan = LoadBalancerSimulation(SimulationConfig(simulation_duration=12.0)).run_simulation().failures
    assert ("Edge1", "crash") in {(f.node, f.kind) for f in plan}


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


def test_a_scenario_file_or_a_generated_topology_runs():
    sim = LoadBalancerSimulation.from_scenario(str(SCENARIOS / "edge-core-cloud.toml"))
    assert sim.nodes == ["Edge1", "Edge2", "Core1", "Core2", "Cloud1"]
    assert sim.get_current_state().time_s == 0.0
    with pytest.raises(ValueError, match="nowhere.toml"):
        LoadBalancerSimulation.from_scenario("nowhere.toml")
    with pytest.raises(ValueError, match="broadcast"):
        LoadBalancerSimulation.from_scenario(str(SCENARIOS / "broadcast.toml"))

    big = LoadBalancerSimulation.generated(6, 3, 2, config=SimulationConfig(simulation_duration=4.0))
    assert len(big.nodes) == 11
    FailureInjector(big).inject_crash_failure(big.nodes[6], duration=1.0, at=2.0)
    result = big.run_simulation()
    assert result.requests["succeeded"] > 0 and len(result.nodes) == 11
    assert [(f.node, f.kind) for f in result.failures] == [(big.nodes[6], "crash")]
    with pytest.raises(ValueError):
        LoadBalancerSimulation.generated(0, 0, 0)


def test_redundancy_follows_the_risk_assessment():
    manager = RedundancyFailoverManager()
    core1 = RiskAssessment("Core1", 0.4, 0.95, 0.9, 4, "byzantine")
    strategies = manager.configure_redundancy_from_risk_assessment([
        core1,
        {"id": "Edge2", "failure_probability": 0.1, "criticality": 0.3, "cascade_risk": 0.2,
         "dependency_count": 1, "failure_mode": "omission"},
    ])
    assert strategies["Core1"] == RedundancyStrategy.N_WAY_QUORUM
    assert set(strategies) == {"Core1", "Edge2"}
    with pytest.raises(ValueError, match=r"nodes\[0\]: missing field `failure_probability`"):
        manager.configure_redundancy_from_risk_assessment([{"id": "x"}])


def test_a_failover_is_performed_from_a_state():
    sim = quiet(10.0)
    sim.run_simulation()
    state = sim.get_current_state()
    # Nothing failed in the run itself: the failover below is not looked up.
    assert state.failovers == []
    manager = RedundancyFailoverManager()
    event = manager.implement_automated_failover("Edge1", state)
    # Edge1 serves rpc, load_balancer and (the fourth member) transactions.
    assert isinstance(event, FailoverEvent)
    assert event.from_node == "Edge1" and event.service in {"rpc", "load_balancer", "transactions"}
    assert 10.0 <= event.at_s < 11.0 and event.recovery_s is not None and event.recovery_s < 1.0
    # The same from the state before any run: 2 s in.
    early = manager.implement_automated_failover("Edge1", quiet(10.0).get_current_state())
    assert early is not None and 2.0 <= early.at_s < 3.0
    with pytest.raises(ValueError, match='no node "Nowhere"'):
        manager.implement_automated_failover("Nowhere", state)
    with pytest.raises(ValueError, match="SimulationState"):
        manager.implement_automated_failover("Edge1", state.to_dict())


def test_multi_node_failure():
    manager = RedundancyFailoverManager()
    scenario = manager.simulate_multi_node_failure(2, quiet(8.0))
    assert isinstance(scenario, MultiNodeFailureScenario)
    # The seed's priority order: Core1 (0.95), then Core2 (0.90).
    assert scenario.failed == ["Core1", "Core2"]
    assert {f.node for f in scenario.failures if f.detected_at_s is not None} == {"Core1", "Core2"}
    # Failures a client learns of together are failed over in criticality order.
    batches = {}
    for f in scenario.failovers:
        batches.setdefault((f.by, f.at_s, f.service), []).append(f.from_node)
    rank = {"Core1": 0, "Core2": 1, "Cloud1": 2, "Edge1": 3, "Edge2": 4}  # by criticality
    assert scenario.failovers
    for froms in batches.values():
        assert froms == sorted(froms, key=rank.get), froms
    # From a state: the run goes on 10 s from its end.
    sim = quiet(5.0)
    sim.run_simulation()
    later = manager.simulate_multi_node_failure(1, sim.get_current_state())
    assert later.failed == ["Core1"] and all(f.injected_at_s == pytest.approx(5.0) for f in later.failures)
    with pytest.raises(ValueError, match="node_count"):
        manager.simulate_multi_node_failure(9, quiet(8.0))


def test_the_seeds_analyses():
    # The seed's example: T1→T2→T3→T4→T1 and T5→T6→T5.
    cycles = detect_deadlock({"T1": ["T2"], "T2": ["T3"], "T3": ["T4"], "T4": ["T1"], "T5": ["T6"], "T6": ["T5"]})
    assert cycles == [{"T1", "T2", "T3", "T4"}, {"T5", "T6"}]
    assert detect_deadlock({"T1": ["T2"]}) == []

    metrics = json.loads((SCENARIOS / "telecom-metrics.json").read_text())["nodes"]
    ranked = rank_bottlenecks(metrics)
    assert ranked[0].node == "Cloud1" and ranked[0].score == pytest.approx(1.0)
    assert rank_bottlenecks(metrics, reading="corrected")[0].score == pytest.approx(0.8)
    with pytest.raises(ValueError, match=r"nodes\[0\].cpu_percent"):
        rank_bottlenecks([dict(metrics[0], cpu_percent="hot")])

    risks = json.loads((SCENARIOS / "telecom-risk.json").read_text())["nodes"]
    assessed = assess_risk(risks)
    assert assessed["failover_order"][:3] == ["Core1", "Core2", "Cloud1"]
    core1 = next(n for n in assessed["nodes"] if n["node"] == "Core1")
    assert core1["risk_score"] == pytest.approx(0.785) and core1["category"] == "high"

    select = json.loads((SCENARIOS / "telecom-select.json").read_text())
    chosen = select_node(select["request"], select["nodes"])
    best = max(chosen["scores"], key=lambda s: s["total"])
    assert chosen["selected"] == best["node"]
    assert select_node(dict(select["request"], cpu=90), select["nodes"])["selected"] is None
