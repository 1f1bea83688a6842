"""The Helm charts, rendered offline through the Helm library: golden renders, lint, Kubernetes
1.31 schema validation, and the invariants every render must keep."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import helm_python
import kubernetes_validate
import pytest
import yaml

from crossmodel_devstack.stack import PROVIDER_PATHS

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "crossmodel"
DEVINFRA_CHART = REPO / "deploy" / "helm" / "crossmodel-devinfra"
GOLDEN = Path(__file__).parent / "golden"
KUBE_VERSION = "1.31.0"
VARIANTS = ["default", "full", "minimal", "dev", "devinfra"]
CHART_VARIANTS = ["default", "full", "minimal", "dev"]
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "Job"}

GRPC_PORTS = {"auth": 50051, "router": 50052, "billing": 50053, "usage": 50054}
EDGE_PORT = 8080
SIMULATOR_PORT = 9100
STANDARD_LABELS = {
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/component",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/managed-by",
    "helm.sh/chart",
}


def values_file(variant: str) -> Path | None:
    return {
        "default": None,
        "full": CHART / "ci" / "full-values.yaml",
        "minimal": CHART / "ci" / "minimal-values.yaml",
        "dev": REPO / "deploy" / "helm" / "values-dev.yaml",
        "devinfra": None,
    }[variant]


def values_of(variant: str) -> dict[str, Any]:
    path = values_file(variant)
    return yaml.safe_load(path.read_text(encoding="utf-8")) if path else {}


def pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = doc["spec"]["template"]["spec"]
    return spec


def component_of(doc: dict[str, Any]) -> str:
    label: str = doc["metadata"]["labels"]["app.kubernetes.io/component"]
    return label


def workloads(render: Any) -> list[dict[str, Any]]:
    return [d for d in render.docs if d["kind"] in {"Deployment", "StatefulSet"}]


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


# --- golden renders ---------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_render_matches_golden(variant: str, renders: dict[str, Any], update_golden: bool) -> None:
    """A change to any template shows up as a reviewed diff of these files.
    Regenerate with `python -m pytest deploy --update-golden`."""
    text = renders[variant].manifests_text()
    golden = GOLDEN / f"{variant}.yaml"
    if update_golden:
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(text, encoding="utf-8")
    assert golden.is_file(), f"{golden} is missing; run `python -m pytest deploy --update-golden`"
    assert text == golden.read_text(encoding="utf-8"), (
        f"render of {variant!r} differs from {golden.relative_to(REPO)}; review the change and run "
        "`python -m pytest deploy --update-golden`"
    )


def test_every_value_is_documented() -> None:
    doc = (REPO / "docs" / "deploy.md").read_text(encoding="utf-8")
    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    undocumented = [key for key in values if f"`{key}" not in doc]
    for component in values["components"].values():
        undocumented += [key for key in component if key not in doc]
    undocumented += [
        f"networkPolicy.{key}" for key in values["networkPolicy"] if f"networkPolicy.{key}" not in doc
    ]
    assert not undocumented, f"docs/deploy.md does not mention {sorted(set(undocumented))}"


def test_every_golden_file_belongs_to_a_variant() -> None:
    assert {p.stem for p in GOLDEN.glob("*.yaml")} == set(VARIANTS)


# --- lint and schema validation ---------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_lint_strict(variant: str) -> None:
    chart = DEVINFRA_CHART if variant == "devinfra" else CHART
    report = helm_python.lint(
        str(chart),
        values_of(variant),
        strict=True,
        kube_version=f"v{KUBE_VERSION}",
        with_subcharts=True,
        namespace="crossmodel",
    )
    assert report["errors"] == []
    # Severity 1 is informational ("icon is recommended"); warnings and errors fail.
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_manifest_is_valid_kubernetes(variant: str, renders: dict[str, Any]) -> None:
    docs = renders[variant].docs
    assert docs
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']}: {exc}")


@pytest.mark.parametrize("variant", VARIANTS)
def test_names_are_unique_per_kind(variant: str, renders: dict[str, Any]) -> None:
    seen = [(d["kind"], d["metadata"]["name"]) for d in renders[variant].docs]
    assert len(seen) == len(set(seen))


# --- values schema ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "values",
    [
        {"unknown": 1},
        {"components": {"edge": {"replicas": 2}}},
        {"components": {"gateway": {"enabled": True}}},
        {"components": {"edge": {"spool": {"type": "emptyDir", "medium": "Memory"}}}},
        {"components": {"edge": {"spool": {"type": "hostPath"}}}},
        {"components": {"auth": {"catalog": {"inline": "x"}}}},
        {"components": {"router": {"providers": {"openai": {"baseUrl": ""}}}}},
        {"components": {"router": {"providers": {"OPENAI": {"apiKey": "sk-inline"}}}}},
        {"networkPolicy": {"kafka": {"to": [], "ports": [], "extra": 1}}},
        {"secrets": {"existingSecret": ""}},
        {"secrets": {"keys": {"authDatabaseUrl": "a", "password": "b"}}},
        {"kafka": {"bootstrap": "kafka"}},
        {"logLevel": "verbose"},
        {"autoscaling": {"enabled": "yes"}},
        {"migrations": {"enabled": True, "image": "x"}},
    ],
    ids=lambda v: json.dumps(v, sort_keys=True)[:60],
)
def test_schema_rejects(values: dict[str, Any], render: Any) -> None:
    with pytest.raises(helm_python.HelmValuesError):
        render(values)


def test_schema_objects_are_closed() -> None:
    """Every object in values.schema.json says what else it allows: nothing (structured values),
    a typed map (labels, env, providers), or Kubernetes objects passed through as written."""
    schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    passthrough = {"k8sObject"}

    def visit(node: Any, where: str) -> None:
        if isinstance(node, dict):
            if node.get("type") == "object":
                assert "additionalProperties" in node, f"{where} does not close its keys"
                if node["additionalProperties"] is True:
                    assert where.endswith(tuple(passthrough)), f"{where} accepts anything"
                if "properties" in node:
                    assert node["additionalProperties"] is False, f"{where} has open properties"
            for key, child in node.items():
                visit(child, f"{where}/{key}")
        elif isinstance(node, list):
            for i, child in enumerate(node):
                visit(child, f"{where}/{i}")

    visit(schema, "#")


def test_a_provider_can_be_removed_with_null(render: Any) -> None:
    router = render({"components": {"router": {"providers": {"GEMINI": None}}}}).get(
        "Deployment", "crossmodel-router"
    )
    env = env_of(pod_spec(router)["containers"][0])
    assert "CROSSMODEL_ROUTER_PROVIDER_GEMINI_API_KEY" not in env
    assert "CROSSMODEL_ROUTER_PROVIDER_OPENAI_API_KEY" in env


# --- invariants of every render ---------------------------------------------------------------


@pytest.mark.parametrize("variant", CHART_VARIANTS)
def test_pods_run_non_root_read_only_and_bounded(variant: str, renders: dict[str, Any]) -> None:
    docs = [d for d in renders[variant].docs if d["kind"] in WORKLOAD_KINDS]
    assert docs
    for doc in docs:
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        spec = pod_spec(doc)
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] != 0, name
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        assert spec["automountServiceAccountToken"] is False, name
        assert spec["enableServiceLinks"] is False, name
        tmp_volumes = {v["name"] for v in spec["volumes"] if "emptyDir" in v}
        for container in spec["containers"]:
            sc = container["securityContext"]
            assert sc["runAsNonRoot"] is True, name
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"]["drop"] == ["ALL"], name
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]), name
            assert "memory" in resources["limits"], name
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert mounts.get("/tmp") in tmp_volumes, f"{name} has no writable /tmp"


@pytest.mark.parametrize("variant", CHART_VARIANTS)
def test_every_long_running_pod_is_probed(variant: str, renders: dict[str, Any]) -> None:
    for doc in workloads(renders[variant]):
        component = component_of(doc)
        container = pod_spec(doc)["containers"][0]
        probes = {p: container[p] for p in ("startupProbe", "readinessProbe", "livenessProbe")}
        if component in GRPC_PORTS:
            # Native gRPC probes call grpc.health.v1 on the serving port.
            for probe in probes.values():
                assert probe["grpc"]["port"] == GRPC_PORTS[component]
        elif component == "edge":
            assert probes["readinessProbe"]["httpGet"]["path"] == "/readyz"
            assert probes["livenessProbe"]["httpGet"]["path"] == "/healthz"
            assert probes["startupProbe"]["httpGet"]["path"] == "/healthz"
        else:
            assert component == "simulator"
            assert all(p["httpGet"]["path"] == "/healthz" for p in probes.values())
        # The pod's grace period covers the preStop pause plus the service's own drain time.
        pause = re.search(r"sleep\((\d+)\)", " ".join(container["lifecycle"]["preStop"]["exec"]["command"]))
        assert pause, "preStop pauses so endpoints drop the pod before SIGTERM"
        drain = int(env_of(container).get(f"CROSSMODEL_{component.upper()}_SHUTDOWN_GRACE_SECONDS", 0))
        assert pod_spec(doc)["terminationGracePeriodSeconds"] >= int(pause.group(1)) + drain + 5


@pytest.mark.parametrize("variant", VARIANTS)
def test_standard_labels_everywhere(variant: str, renders: dict[str, Any]) -> None:
    for doc in renders[variant].docs:
        labels = doc["metadata"].get("labels", {})
        if variant == "devinfra":
            assert {"app.kubernetes.io/name", "app.kubernetes.io/instance", "helm.sh/chart"} <= set(labels)
            continue
        assert labels.keys() >= STANDARD_LABELS, f"{doc['kind']}/{doc['metadata']['name']}"
        assert labels["app.kubernetes.io/part-of"] == "crossmodel"


@pytest.mark.parametrize("variant", CHART_VARIANTS)
def test_every_component_has_its_service_account_service_and_budget(
    variant: str, renders: dict[str, Any]
) -> None:
    r = renders[variant]
    values = values_of(variant)
    components = {component_of(d) for d in workloads(r)}
    expected = {"edge", "auth", "router", "billing", "usage"}
    if values.get("components", {}).get("simulator", {}).get("enabled"):
        expected.add("simulator")
    assert components == expected
    pdb_on = values.get("podDisruptionBudget", {}).get("enabled", True)
    hpa_on = values.get("autoscaling", {}).get("enabled", False)
    for component in components:
        name = f"crossmodel-{component}"
        r.get("ServiceAccount", name)
        service = r.get("Service", name)
        assert service["spec"]["selector"]["app.kubernetes.io/component"] == component
        if component in GRPC_PORTS:
            assert service["spec"]["clusterIP"] == "None"
            assert service["spec"]["ports"][0]["port"] == GRPC_PORTS[component]
        assert bool([p for p in r.kind("PodDisruptionBudget") if p["metadata"]["name"] == name]) == pdb_on
        hpas = [h for h in r.kind("HorizontalPodAutoscaler") if h["metadata"]["name"] == name]
        assert bool(hpas) == hpa_on
        workload = next(d for d in workloads(r) if component_of(d) == component)
        assert ("replicas" in workload["spec"]) == (not hpa_on)
        if hpas:
            assert hpas[0]["spec"]["scaleTargetRef"]["kind"] == workload["kind"]


def test_images_default_to_the_app_version(renders: dict[str, Any]) -> None:
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text(encoding="utf-8"))["appVersion"]
    for doc in workloads(renders["default"]):
        component = component_of(doc)
        assert pod_spec(doc)["containers"][0]["image"] == f"crossmodel/{component}:{app_version}"


def test_image_overrides(renders: dict[str, Any]) -> None:
    images = {component_of(d): pod_spec(d)["containers"][0]["image"] for d in workloads(renders["full"])}
    assert images["edge"] == "registry.example.com/crossmodel/edge-custom:1.2.4"
    assert images["auth"] == "registry.example.com/crossmodel/auth:1.2.3"


# --- component wiring -------------------------------------------------------------------------


def test_edge_spool_on_an_empty_dir_by_default(renders: dict[str, Any]) -> None:
    edge = renders["default"].get("Deployment", "crossmodel-edge")
    spool = next(v for v in pod_spec(edge)["volumes"] if v["name"] == "spool")
    assert spool["emptyDir"]["sizeLimit"] == "1Gi"
    env = env_of(pod_spec(edge)["containers"][0])
    mounts = {m["name"]: m["mountPath"] for m in pod_spec(edge)["containers"][0]["volumeMounts"]}
    assert env["CROSSMODEL_EDGE_SPOOL_DIR"] == mounts["spool"]


def test_edge_spool_on_a_volume_per_replica(renders: dict[str, Any]) -> None:
    r = renders["full"]
    assert not [d for d in r.kind("Deployment") if component_of(d) == "edge"]
    edge = r.get("StatefulSet", "crossmodel-edge")
    claim = edge["spec"]["volumeClaimTemplates"][0]
    assert claim["metadata"]["name"] == "spool"
    assert claim["spec"]["resources"]["requests"]["storage"] == "5Gi"
    assert claim["spec"]["storageClassName"] == "fast-ssd"
    assert "spool" not in {v["name"] for v in pod_spec(edge)["volumes"]}
    assert edge["spec"]["persistentVolumeClaimRetentionPolicy"]["whenScaled"] == "Retain"
    assert edge["spec"]["serviceName"] == "crossmodel-edge"


def test_edge_ingress(renders: dict[str, Any]) -> None:
    assert renders["default"].kind("Ingress") == []
    ingress = renders["full"].get("Ingress", "crossmodel-edge")
    assert ingress["spec"]["ingressClassName"] == "nginx"
    rule = ingress["spec"]["rules"][0]
    assert rule["host"] == "api.crossmodel.example.com"
    backend = rule["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "crossmodel-edge", "port": {"name": "http"}}
    assert ingress["spec"]["tls"][0]["secretName"] == "crossmodel-tls"


def test_router_catalog_override(renders: dict[str, Any], render: Any) -> None:
    assert renders["default"].kind("ConfigMap") == []
    default_router = renders["default"].get("Deployment", "crossmodel-router")
    assert "CROSSMODEL_ROUTER_CATALOG" not in env_of(pod_spec(default_router)["containers"][0])

    r = renders["full"]
    config_map = r.get("ConfigMap", "crossmodel-router-catalog")
    assert "openai/gpt-4o-mini" in config_map["data"]["catalog.yaml"]
    router = r.get("Deployment", "crossmodel-router")
    spec = pod_spec(router)
    env = env_of(spec["containers"][0])
    mounts = {m["name"]: m["mountPath"] for m in spec["containers"][0]["volumeMounts"]}
    volume = next(v for v in spec["volumes"] if v["name"] == "catalog")
    assert volume["configMap"]["name"] == "crossmodel-router-catalog"
    assert env["CROSSMODEL_ROUTER_CATALOG"] == f"{mounts['catalog']}/catalog.yaml"
    assert "checksum/catalog" in router["spec"]["template"]["metadata"]["annotations"]

    existing = render({"components": {"router": {"catalog": {"existingConfigMap": "my-catalog"}}}})
    assert existing.kind("ConfigMap") == []
    volume = next(
        v
        for v in pod_spec(existing.get("Deployment", "crossmodel-router"))["volumes"]
        if v["name"] == "catalog"
    )
    assert volume["configMap"]["name"] == "my-catalog"


def test_secrets_come_only_from_the_existing_secret(renders: dict[str, Any]) -> None:
    for variant in CHART_VARIANTS:
        r = renders[variant]
        assert r.kind("Secret") == [], "the chart must not hold secrets"
        secret = values_of(variant).get("secrets", {}).get("existingSecret", "crossmodel")
        for doc in r.docs:
            if doc["kind"] not in WORKLOAD_KINDS:
                continue
            for container in pod_spec(doc)["containers"]:
                for var in container["env"]:
                    ref = var.get("valueFrom", {}).get("secretKeyRef")
                    if ref:
                        assert ref["name"] == secret
                    else:
                        assert not any(
                            word in var["name"] for word in ("DATABASE_URL", "REDIS_URL", "API_KEY", "TOKEN")
                        ), f"{var['name']} must come from the Secret"


def test_secret_references_per_component(renders: dict[str, Any]) -> None:
    r = renders["default"]
    refs: dict[str, dict[str, str]] = {}
    for doc in workloads(r):
        refs[component_of(doc)] = {
            e["name"]: e["valueFrom"]["secretKeyRef"]["key"]
            for e in pod_spec(doc)["containers"][0]["env"]
            if "secretKeyRef" in e.get("valueFrom", {})
        }
    assert refs["edge"] == {"CROSSMODEL_EDGE_ADMIN_TOKEN": "admin-token"}
    assert refs["auth"] == {
        "CROSSMODEL_AUTH_DATABASE_URL": "auth-database-url",
        "CROSSMODEL_AUTH_REDIS_URL": "redis-url",
    }
    assert refs["billing"] == {
        "CROSSMODEL_BILLING_DATABASE_URL": "billing-database-url",
        "CROSSMODEL_BILLING_REDIS_URL": "redis-url",
    }
    assert refs["usage"] == {"CROSSMODEL_USAGE_DATABASE_URL": "usage-database-url"}
    assert refs["router"] == {
        f"CROSSMODEL_ROUTER_PROVIDER_{p}_API_KEY": f"{p.lower()}-api-key" for p in catalog_providers()
    }


def catalog_providers() -> set[str]:
    """Provider names of the router's packaged catalog, as they appear in variable names."""
    catalog = yaml.safe_load(
        (REPO / "services" / "router" / "src" / "crossmodel_router" / "catalog.yaml").read_text(
            encoding="utf-8"
        )
    )
    return {name.upper().replace("-", "_") for name in catalog["providers"]}


def test_default_providers_are_the_catalog_providers() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    assert set(values["components"]["router"]["providers"]) == catalog_providers()
    assert set(PROVIDER_PATHS) == catalog_providers()


def test_grpc_targets_are_the_headless_services(renders: dict[str, Any]) -> None:
    r = renders["default"]
    edge = env_of(pod_spec(r.get("Deployment", "crossmodel-edge"))["containers"][0])
    auth = env_of(pod_spec(r.get("Deployment", "crossmodel-auth"))["containers"][0])
    for component, port in GRPC_PORTS.items():
        assert edge[f"CROSSMODEL_EDGE_{component.upper()}_TARGET"] == (
            f"crossmodel-{component}.crossmodel.svc.cluster.local:{port}"
        )
        r.get("Service", f"crossmodel-{component}")
    assert auth["CROSSMODEL_AUTH_BILLING_TARGET"] == edge["CROSSMODEL_EDGE_BILLING_TARGET"]


def test_telemetry_environment(renders: dict[str, Any]) -> None:
    default = env_of(pod_spec(renders["default"].get("Deployment", "crossmodel-auth"))["containers"][0])
    assert default["OTEL_SERVICE_NAME"] == "crossmodel-auth"
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in default
    assert "k8s.pod.name=$(K8S_POD_NAME)" in default["OTEL_RESOURCE_ATTRIBUTES"]
    names = [
        e["name"]
        for e in pod_spec(renders["default"].get("Deployment", "crossmodel-auth"))["containers"][0]["env"]
    ]
    # $(VAR) expands only variables defined earlier in the list.
    assert names.index("K8S_POD_NAME") < names.index("OTEL_RESOURCE_ATTRIBUTES")

    full = env_of(pod_spec(renders["full"].get("Deployment", "crossmodel-billing"))["containers"][0])
    assert full["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector.observability:4317"
    assert full["OTEL_EXPORTER_OTLP_PROTOCOL"] == "grpc"
    assert full["OTEL_TRACES_SAMPLER"] == "parentbased_traceidratio"
    assert full["OTEL_TRACES_SAMPLER_ARG"] == "0.25"
    assert full["OTEL_RESOURCE_ATTRIBUTES"].endswith(",deployment.environment.name=production")


def test_kafka_settings(renders: dict[str, Any]) -> None:
    r = renders["full"]
    edge = env_of(pod_spec(r.get("StatefulSet", "crossmodel-edge"))["containers"][0])
    assert (
        edge["CROSSMODEL_EDGE_KAFKA_BOOTSTRAP"] == "kafka-0.kafka.data.svc:9092,kafka-1.kafka.data.svc:9092"
    )
    assert edge["CROSSMODEL_EDGE_USAGE_TOPIC"] == "crossmodel.usage.v1"
    assert edge["CROSSMODEL_EDGE_KAFKA_IDEMPOTENCE"] == "true"
    for consumer in ("billing", "usage"):
        env = env_of(pod_spec(r.get("Deployment", f"crossmodel-{consumer}"))["containers"][0])
        assert env[f"CROSSMODEL_{consumer.upper()}_USAGE_TOPIC"] == "crossmodel.usage.v1"
        assert env[f"CROSSMODEL_{consumer.upper()}_DLQ_TOPIC"] == f"crossmodel.usage.v1.{consumer}.dlq"


def test_extra_env_and_log_levels(renders: dict[str, Any]) -> None:
    r = renders["full"]
    edge = env_of(pod_spec(r.get("StatefulSet", "crossmodel-edge"))["containers"][0])
    assert edge["CROSSMODEL_EDGE_MAX_BODY_BYTES"] == "8388608"
    assert edge["CROSSMODEL_EDGE_LOG_LEVEL"] == "DEBUG"
    auth = env_of(pod_spec(r.get("Deployment", "crossmodel-auth"))["containers"][0])
    assert auth["CROSSMODEL_AUTH_LOG_LEVEL"] == "WARNING"
    assert auth["CROSSMODEL_AUTH_SHUTDOWN_GRACE_SECONDS"] == "20"
    assert pod_spec(r.get("Deployment", "crossmodel-auth"))["terminationGracePeriodSeconds"] == 35


# --- migrations -------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["default", "full", "dev"])
def test_migration_jobs_are_pre_install_and_pre_upgrade_hooks(variant: str, renders: dict[str, Any]) -> None:
    r = renders[variant]
    jobs = {j["metadata"]["name"]: j for j in r.kind("Job")}
    assert set(jobs) == {"crossmodel-auth-migrate", "crossmodel-billing-migrate", "crossmodel-usage-migrate"}
    for name, job in jobs.items():
        component = name.removeprefix("crossmodel-").removesuffix("-migrate")
        annotations = job["metadata"]["annotations"]
        assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
        container = pod_spec(job)["containers"][0]
        assert container["args"] == ["migrate"]
        workload = next(d for d in workloads(r) if component_of(d) == component)
        # Same image and the same settings as the service, so `migrate` sees what the service sees.
        assert container["image"] == pod_spec(workload)["containers"][0]["image"]
        assert container["env"] == pod_spec(workload)["containers"][0]["env"]
        assert pod_spec(job)["restartPolicy"] == "Never"
        # A Job's pods must not match the component's Service or policies.
        assert component_of(job) == f"{component}-migrate"
        policy = r.get("NetworkPolicy", name)
        assert policy["metadata"]["annotations"]["helm.sh/hook"] == annotations["helm.sh/hook"]
        assert int(policy["metadata"]["annotations"]["helm.sh/hook-weight"]) < int(
            annotations["helm.sh/hook-weight"]
        )
        assert (
            policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
            == f"{component}-migrate"
        )


def test_migrations_can_be_turned_off(renders: dict[str, Any]) -> None:
    assert renders["minimal"].kind("Job") == []


# --- the development release and its infrastructure -------------------------------------------


def test_dev_values_point_at_the_devinfra_release(renders: dict[str, Any]) -> None:
    dev, infra = renders["dev"], renders["devinfra"]
    infra_services = {s["metadata"]["name"]: s for s in infra.kind("Service")}
    edge = env_of(pod_spec(dev.get("Deployment", "crossmodel-edge"))["containers"][0])
    host, port = edge["CROSSMODEL_EDGE_KAFKA_BOOTSTRAP"].split(":")
    assert int(port) in {p["port"] for p in infra_services[host]["spec"]["ports"]}
    otlp = edge["OTEL_EXPORTER_OTLP_ENDPOINT"].removeprefix("http://")
    host, port = otlp.split(":")
    assert int(port) in {p["port"] for p in infra_services[host]["spec"]["ports"]}

    # Every Secret key the release requires is in the Secret devinfra creates.
    secret = infra.get("Secret", values_of("dev").get("secrets", {}).get("existingSecret", "crossmodel"))
    required = {
        e["valueFrom"]["secretKeyRef"]["key"]
        for d in dev.docs
        if d["kind"] in WORKLOAD_KINDS
        for e in pod_spec(d)["containers"][0]["env"]
        if "secretKeyRef" in e.get("valueFrom", {}) and not e["valueFrom"]["secretKeyRef"].get("optional")
    }
    assert required
    assert required <= set(secret["stringData"])
    for key, url in secret["stringData"].items():
        if key.endswith("-database-url"):
            assert url.split("@")[1].split(":")[0] == "crossmodel-infra-postgres.crossmodel.svc.cluster.local"


def test_dev_providers_point_at_the_simulator(renders: dict[str, Any]) -> None:
    dev = renders["dev"]
    simulator = dev.get("Service", "crossmodel-simulator")
    port = simulator["spec"]["ports"][0]["port"]
    env = env_of(pod_spec(dev.get("Deployment", "crossmodel-router"))["containers"][0])
    urls = {k: v for k, v in env.items() if k.endswith("_BASE_URL")}
    for url in urls.values():
        assert url.startswith(f"http://crossmodel-simulator:{port}/")
    # The same vendor paths as `make run` uses.
    paths = {
        k.removeprefix("CROSSMODEL_ROUTER_PROVIDER_").removesuffix("_BASE_URL"): v for k, v in urls.items()
    }
    assert {k: v.split(f":{port}", 1)[1] for k, v in paths.items()} == PROVIDER_PATHS
    # Every provider's key is in the development Secret.
    secret = renders["devinfra"].get("Secret", "crossmodel")["stringData"]
    refs = [
        e["valueFrom"]["secretKeyRef"]["key"]
        for e in pod_spec(dev.get("Deployment", "crossmodel-router"))["containers"][0]["env"]
        if e["name"].endswith("_API_KEY")
    ]
    assert len(refs) == len(PROVIDER_PATHS)
    assert set(refs) <= set(secret)


def test_devinfra_databases_match_the_init_script(renders: dict[str, Any]) -> None:
    infra = renders["devinfra"]
    init_sql = infra.get("ConfigMap", "crossmodel-infra-postgres-initdb")["data"]["01-databases.sql"]
    assert init_sql.strip() == (DEVINFRA_CHART / "files" / "initdb.sql").read_text(encoding="utf-8").strip()
    for key, url in infra.get("Secret", "crossmodel")["stringData"].items():
        if not key.endswith("-database-url"):
            continue
        credentials, location = url.removeprefix("postgresql+asyncpg://").split("@")
        user, password = credentials.split(":")
        database = location.split("/")[-1]
        assert f"CREATE ROLE {user} LOGIN PASSWORD '{password}';" in init_sql
        assert f"CREATE DATABASE {database} OWNER {user};" in init_sql


def test_devinfra_pods_run_non_root(renders: dict[str, Any]) -> None:
    for doc in workloads(renders["devinfra"]):
        spec = pod_spec(doc)
        assert spec["securityContext"]["runAsNonRoot"] is True
        for container in spec["containers"]:
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert "memory" in container["resources"]["limits"]
            assert "readinessProbe" in container


def test_notes_say_how_to_reach_the_api(renders: dict[str, Any]) -> None:
    default = renders["default"].templates["crossmodel/templates/NOTES.txt"]
    assert "port-forward service/crossmodel-edge 8080:80" in default
    full = renders["full"].templates["crossmodel/templates/NOTES.txt"]
    assert "https://api.crossmodel.example.com/v1" in full
