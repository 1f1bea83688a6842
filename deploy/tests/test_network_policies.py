"""The NetworkPolicies, evaluated: from the rendered policies alone, which pod may open a
connection to which, and which external ports each may reach. The expected graph is written out
here by hand (ARCHITECTURE.md's request path), independent of the chart's own tables."""

from __future__ import annotations

from itertools import product
from typing import Any

import pytest

# Who calls whom inside the release; every other pair must be refused.
CALLS = {
    ("edge", "auth"),
    ("edge", "router"),
    ("edge", "billing"),
    ("edge", "usage"),
    ("auth", "billing"),
    ("router", "simulator"),
}
# The systems outside the release each component may reach.
EXTERNAL = {
    "edge": {"dns", "kafka", "otlp"},
    "auth": {"dns", "postgres", "redis", "otlp"},
    "router": {"dns", "providers", "otlp"},
    "billing": {"dns", "postgres", "redis", "kafka", "otlp"},
    "usage": {"dns", "postgres", "kafka", "otlp"},
    "simulator": set(),
    "auth-migrate": {"dns", "postgres", "otlp"},
    "billing-migrate": {"dns", "postgres", "otlp"},
    "usage-migrate": {"dns", "postgres", "otlp"},
}
# Their ports in each variant's values (OTLP only where otel.endpoint is set).
SYSTEM_PORTS = {"dns": {53}, "postgres": {5432}, "redis": {6379}, "providers": {443}}
VARIANT_PORTS = {
    "default": {**SYSTEM_PORTS, "kafka": {9092}, "otlp": set()},
    "full": {**SYSTEM_PORTS, "kafka": {9092, 9093}, "otlp": {4317}},
    "dev": {**SYSTEM_PORTS, "kafka": {9092}, "otlp": {4317, 4318}},
}
PROBE_PORTS = [53, 443, 4317, 4318, 5432, 6379, 8080, 9092, 9093, 9100, 50051, 50052, 50053, 50054]
SERVING_PORT = {
    "edge": 8080,
    "auth": 50051,
    "router": 50052,
    "billing": 50053,
    "usage": 50054,
    "simulator": 9100,
}


def pods(render: Any) -> dict[str, dict[str, str]]:
    """component -> pod labels, for every workload and migration Job in the render."""
    out = {}
    for doc in render.docs:
        if doc["kind"] in {"Deployment", "StatefulSet", "Job"}:
            labels = doc["spec"]["template"]["metadata"]["labels"]
            out[labels["app.kubernetes.io/component"]] = labels
    return out


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, "only matchLabels selectors are expected here"
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def peer_is_pod(peer: dict[str, Any], labels: dict[str, str]) -> bool:
    """A peer naming pods of this namespace (podSelector alone) that match `labels`."""
    return set(peer) == {"podSelector"} and selects(peer["podSelector"], labels)


def peer_is_external(peer: dict[str, Any]) -> bool:
    return "ipBlock" in peer or "namespaceSelector" in peer


def port_ok(rule: dict[str, Any], port: int) -> bool:
    return "ports" not in rule or any(p["port"] == port for p in rule["ports"])


def policies_for(render: Any, labels: dict[str, str], direction: str) -> list[dict[str, Any]]:
    return [
        p
        for p in render.kind("NetworkPolicy")
        if direction in p["spec"]["policyTypes"] and selects(p["spec"]["podSelector"], labels)
    ]


def egress_to_pod(render: Any, src: dict[str, str], dst: dict[str, str], port: int) -> bool:
    policies = policies_for(render, src, "Egress")
    if not policies:
        return True
    return any(
        port_ok(rule, port) and ("to" not in rule or any(peer_is_pod(peer, dst) for peer in rule["to"]))
        for p in policies
        for rule in p["spec"].get("egress", [])
    )


def ingress_from_pod(render: Any, src: dict[str, str], dst: dict[str, str], port: int) -> bool:
    policies = policies_for(render, dst, "Ingress")
    if not policies:
        return True
    return any(
        port_ok(rule, port) and ("from" not in rule or any(peer_is_pod(peer, src) for peer in rule["from"]))
        for p in policies
        for rule in p["spec"].get("ingress", [])
    )


def egress_external(render: Any, src: dict[str, str], port: int) -> bool:
    return any(
        port_ok(rule, port) and ("to" not in rule or any(peer_is_external(peer) for peer in rule["to"]))
        for p in policies_for(render, src, "Egress")
        for rule in p["spec"].get("egress", [])
    )


@pytest.mark.parametrize("variant", ["default", "full", "dev"])
def test_every_pod_is_covered_both_ways(variant: str, renders: dict[str, Any]) -> None:
    r = renders[variant]
    for component, labels in pods(r).items():
        for direction in ("Ingress", "Egress"):
            assert len(policies_for(r, labels, direction)) == 1, f"{component} {direction}"


@pytest.mark.parametrize("variant", ["default", "full", "dev"])
def test_only_the_named_callers_connect(variant: str, renders: dict[str, Any]) -> None:
    r = renders[variant]
    running = pods(r)
    for (src, src_labels), (dst, dst_labels) in product(running.items(), running.items()):
        if src == dst:
            continue
        for port in PROBE_PORTS:
            allowed = egress_to_pod(r, src_labels, dst_labels, port) and ingress_from_pod(
                r, src_labels, dst_labels, port
            )
            expected = (src, dst) in CALLS and port == SERVING_PORT[dst]
            assert allowed == expected, f"{src} -> {dst}:{port} allowed={allowed}"


@pytest.mark.parametrize("variant", ["default", "full", "dev"])
def test_external_egress_is_limited_to_named_ports(variant: str, renders: dict[str, Any]) -> None:
    r = renders[variant]
    for component, labels in pods(r).items():
        reachable = {port for port in PROBE_PORTS if egress_external(r, labels, port)}
        expected = {port for system in EXTERNAL[component] for port in VARIANT_PORTS[variant][system]}
        assert reachable == expected, component


def test_providers_are_reached_only_on_public_addresses(renders: dict[str, Any]) -> None:
    router = pods(renders["default"])["router"]
    [policy] = policies_for(renders["default"], router, "Egress")
    https = [rule for rule in policy["spec"]["egress"] if port_ok(rule, 443) and "ports" in rule]
    [block] = [peer["ipBlock"] for rule in https for peer in rule["to"]]
    assert block["cidr"] == "0.0.0.0/0"
    assert {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"} <= set(block["except"])


def test_edge_ingress_from_anywhere_by_default_and_narrowed_by_value(renders: dict[str, Any]) -> None:
    default_edge = pods(renders["default"])["edge"]
    [policy] = policies_for(renders["default"], default_edge, "Ingress")
    [rule] = policy["spec"]["ingress"]
    assert "from" not in rule
    assert rule["ports"] == [{"protocol": "TCP", "port": 8080}]

    full_edge = pods(renders["full"])["edge"]
    [policy] = policies_for(renders["full"], full_edge, "Ingress")
    [rule] = policy["spec"]["ingress"]
    assert rule["from"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "ingress-nginx"
    }


def test_nothing_reaches_migration_jobs(renders: dict[str, Any]) -> None:
    r = renders["default"]
    for component, labels in pods(r).items():
        if component.endswith("-migrate"):
            [policy] = policies_for(r, labels, "Ingress")
            assert policy["spec"]["ingress"] == []


def test_policies_can_be_turned_off(renders: dict[str, Any]) -> None:
    assert renders["minimal"].kind("NetworkPolicy") == []
