"""The Helm chart, rendered by the real helm for the defaults and every example.

`helm lint --strict`; every object valid for Kubernetes 1.30 to 1.35 (kubernetes-validate),
custom resources against their CRDs; every pod meets the restricted Pod Security Standard,
has probes, resources and labels; and what the pods are told (ports, NATS, images, keys)
agrees with what the services read.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Sequence
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from support.helm_chart import (
    CHART,
    NAMESPACE,
    RELEASE,
    VALUE_SETS,
    Obj,
    component,
    containers,
    env,
    find,
    pod_labels,
    render,
    render_set,
    run_helm,
    workloads,
)

from edgegate_gateway.config import GatewaySettings
from edgegate_inference.config import InferenceSettings
from edgegate_security.config import SecuritySettings
from edgegate_security.core.keyring import KeyRing
from edgegate_security.core.tokens import TokenIssuer, TokenPolicy, TokenVerifier
from edgegate_taskstore.config import TaskstoreSettings

KUBERNETES_VERSIONS = ["1.30.0", "1.31.0", "1.32.0", "1.33.0", "1.34.0", "1.35.0"]
# Kinds whose schemas are not Kubernetes' own. The chart's own CRDs' kinds are checked
# against crds/ below; these two belong to other projects' CRDs (Prometheus Operator,
# Gateway API), which this repository does not ship, so only their shape is checked.
FOREIGN_KINDS = {"ServiceMonitor", "HTTPRoute"}
SERVICES = {
    "gateway": GatewaySettings,
    "inference": InferenceSettings,
    "taskstore": TaskstoreSettings,
    "security": SecuritySettings,
}
NAMES = sorted(VALUE_SETS)
# The restricted Pod Security Standard's allowed volume types.
RESTRICTED_VOLUMES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
    "projected", "secret",
}  # fmt: skip
RECOMMENDED_LABELS = {
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/component",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/part-of",
    "helm.sh/chart",
}


def crd_schemas() -> dict[tuple[str, str], Obj]:
    """(apiVersion, kind) -> the openAPIV3Schema of every CRD the chart ships."""
    out = {}
    for path in sorted((CHART / "crds").glob("*.yaml")):
        crd = yaml.safe_load(path.read_text(encoding="utf-8"))
        for version in crd["spec"]["versions"]:
            key = (f"{crd['spec']['group']}/{version['name']}", crd["spec"]["names"]["kind"])
            out[key] = version["schema"]["openAPIV3Schema"]
    return out


@pytest.mark.parametrize("name", NAMES)
def test_helm_lint_strict(name: str) -> None:
    args = ["lint", "--strict", str(CHART)]
    for file in VALUE_SETS[name]:
        args += ["--values", str(file)]
    result = run_helm(*args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("name", NAMES)
def test_every_object_validates_against_kubernetes(name: str, version: str) -> None:
    schemas = crd_schemas()
    checked = 0
    for obj in render_set(name):
        key = (obj["apiVersion"], obj["kind"])
        if key in schemas:
            jsonschema.validate(obj, schemas[key])
        elif obj["kind"] in FOREIGN_KINDS:
            assert obj["spec"], obj["kind"]
        else:
            kubernetes_validate.validate(obj, version, strict=True)
            checked += 1
    assert checked >= 20  # the whole release, not an empty render


def test_the_validator_refuses_what_the_api_server_would() -> None:
    """kubernetes-validate is not a rubber stamp: an unknown field in a pod spec is refused."""
    deployment = json.loads(
        json.dumps(find(render_set("defaults"), "Deployment", f"{RELEASE}-edgegate-gateway"))
    )
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContxt"] = {}
    with pytest.raises(kubernetes_validate.ValidationError, match="securityContxt"):
        kubernetes_validate.validate(deployment, "1.31.0", strict=True)


@pytest.mark.parametrize("name", NAMES)
def test_every_pod_meets_the_restricted_pod_security_standard(name: str) -> None:
    pods = list(workloads(render_set(name)))
    assert pods
    for obj, pod in pods:
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        context = pod["securityContext"]
        assert context["runAsNonRoot"] is True, where
        assert context["runAsUser"] > 0 and context["runAsGroup"] > 0, where
        assert context["seccompProfile"]["type"] == "RuntimeDefault", where
        for host in ("hostNetwork", "hostPID", "hostIPC"):
            assert not pod.get(host), where
        for volume in pod.get("volumes", []):
            assert set(volume) - {"name"} <= RESTRICTED_VOLUMES, (where, volume)
        for container in containers(pod):
            sc = container["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["capabilities"] == {"drop": ["ALL"]}, where
            assert sc.get("privileged") is not True, where
            assert sc["seccompProfile"]["type"] == "RuntimeDefault", where
            assert sc.get("runAsUser", context["runAsUser"]) != 0, where
            assert all("hostPort" not in p for p in container.get("ports", [])), where
            # A read-only root needs somewhere to write: /tmp (HOME in edgegate's images).
            if component(obj) != "nats":  # nats-server writes only its JetStream store
                assert "/tmp" in {m["mountPath"] for m in container["volumeMounts"]}, where


@pytest.mark.parametrize("name", NAMES)
def test_only_the_operator_gets_a_service_account_token(name: str) -> None:
    for obj, pod in workloads(render_set(name)):
        is_operator = component(obj) == "operator"
        assert pod["automountServiceAccountToken"] is is_operator, obj["metadata"]["name"]
        assert ("serviceAccountName" in pod) is is_operator


@pytest.mark.parametrize("name", NAMES)
def test_every_container_has_resources_and_every_server_probes(name: str) -> None:
    for obj, pod in workloads(render_set(name)):
        for container in containers(pod):
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]), container["name"]
            assert "memory" in resources["limits"], container["name"]
        if obj["kind"] == "Pod":  # the helm test pod runs once
            continue
        (main,) = pod["containers"]
        assert main["readinessProbe"] and main["livenessProbe"], obj["metadata"]["name"]
        if component(obj) in SERVICES:
            ports = {p["name"]: p["containerPort"] for p in main["ports"]}
            for probe in ("readinessProbe", "livenessProbe"):
                assert main[probe]["grpc"] == {"port": ports["grpc"]}
    inference = find(render_set("minimal"), "Deployment", f"{RELEASE}-edgegate-inference")
    (main,) = inference["spec"]["template"]["spec"]["containers"]
    assert main["startupProbe"]["grpc"] == {"port": 8001}
    probe = main["startupProbe"]
    assert probe["periodSeconds"] * probe["failureThreshold"] == 600  # startupTimeoutSeconds


@pytest.mark.parametrize("name", NAMES)
def test_every_object_carries_the_recommended_labels(name: str) -> None:
    for obj in render_set(name):
        labels = obj["metadata"].get("labels", {})
        assert set(labels) >= RECOMMENDED_LABELS, f"{obj['kind']}/{obj['metadata']['name']}"
        assert labels["app.kubernetes.io/instance"] == RELEASE
    for obj, _ in workloads(render_set(name)):
        if obj["kind"] == "Pod":
            continue
        selector = obj["spec"]["selector"]["matchLabels"]
        assert selector.items() <= pod_labels(obj).items()


@pytest.mark.parametrize("name", NAMES)
def test_namespaced_objects_name_their_namespace(name: str) -> None:
    cluster_scoped = {"ClusterRole", "ClusterRoleBinding", "ClusterKopfPeering"}
    for obj in render_set(name):
        if obj["kind"] not in cluster_scoped:
            assert obj["metadata"].get("namespace"), f"{obj['kind']}/{obj['metadata']['name']}"


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_ports_are_the_ones_the_services_listen_on(service: str) -> None:
    """The chart's container ports and probes use each service's own default ports."""
    settings = SERVICES[service]()
    deployment = find(render_set("defaults"), "Deployment", f"{RELEASE}-edgegate-{service}")
    (main,) = deployment["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in main["ports"]}
    assert ports["grpc"] == settings.grpc_port
    assert ports["metrics"] == settings.metrics_port
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(settings.metrics_port)
    if service == "gateway":
        assert ports["http"] == settings.http_port


@pytest.mark.parametrize("name", NAMES)
def test_every_service_is_told_where_nats_is(name: str) -> None:
    objects = render_set(name)
    services = {o["metadata"]["name"] for o in objects if o["kind"] == "Service"}
    urls = set()
    for obj, pod in workloads(objects):
        if component(obj) in (*SERVICES, "operator"):
            (main,) = pod["containers"]
            url = env(main)[f"EDGEGATE_{component(obj).upper()}_NATS_URL"]
            urls.add(url)
    assert len(urls) == 1
    (url,) = urls
    if name == "external-nats":
        assert url.startswith("nats://nats-0.nats.messaging.svc:4222,")
        assert not [o for o in objects if o["kind"] == "StatefulSet"]
    else:
        host = url.removeprefix("nats://").split(".")[0]
        assert host in services, url
        assert url == f"nats://{host}.{NAMESPACE}.svc:4222"


def test_a_nats_cluster_routes_to_every_server() -> None:
    objects = render_set("production-ha")
    statefulset = find(objects, "StatefulSet", f"{RELEASE}-edgegate-nats")
    assert statefulset["spec"]["replicas"] == 3
    config = find(objects, "ConfigMap", f"{RELEASE}-edgegate-nats")["data"]["nats.conf"]
    for i in range(3):
        assert f"nats://{RELEASE}-edgegate-nats-{i}.{RELEASE}-edgegate-nats-headless" in config
    assert "max_file_store: 45Gi" in config
    (claim,) = statefulset["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "50Gi"
    assert claim["spec"]["storageClassName"] == "fast-ssd"
    taskstore = find(objects, "Deployment", f"{RELEASE}-edgegate-taskstore")
    assert (
        env(taskstore["spec"]["template"]["spec"]["containers"][0])["EDGEGATE_TASKSTORE_REPLICAS"]
        == "3"
    )
    single = render_set("defaults")
    assert (
        "cluster {"
        not in find(single, "ConfigMap", f"{RELEASE}-edgegate-nats")["data"]["nats.conf"]
    )


def test_gpu_inference_asks_for_gpus_and_runs_the_gpu_image() -> None:
    deployment = find(render_set("gpu"), "Deployment", f"{RELEASE}-edgegate-inference")
    pod = deployment["spec"]["template"]["spec"]
    (main,) = pod["containers"]
    assert main["image"].startswith("edgegate/inference-gpu:")
    assert main["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod["runtimeClassName"] == "nvidia"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    (fetch,) = pod["initContainers"]
    assert fetch["image"] == main["image"]
    runtime = json.loads(fetch["args"][fetch["args"].index("--runtime") + 1])
    assert runtime["executionProviders"] == ["tensorrt", "cuda", "cpu"]
    cpu = find(render_set("defaults"), "Deployment", f"{RELEASE}-edgegate-inference")
    cpu_pod = cpu["spec"]["template"]["spec"]
    assert "runtimeClassName" not in cpu_pod
    assert "nvidia.com/gpu" not in cpu_pod["containers"][0]["resources"]["limits"]


def test_models_are_fetched_and_checked_or_mounted() -> None:
    deployment = find(render_set("minimal"), "Deployment", f"{RELEASE}-edgegate-inference")
    pod = deployment["spec"]["template"]["spec"]
    (fetch,) = pod["initContainers"]
    assert fetch["command"] == ["python", "-m", "edgegate_inference.fetch"]
    args = fetch["args"]
    assert args[args.index("--dest") + 1] == "/models/all-MiniLM-L6-v2/1"
    assert len(args[args.index("--sha256") + 1]) == 64
    volume = find(render_set("production-ha"), "Deployment", f"{RELEASE}-edgegate-inference")
    ha_pod = volume["spec"]["template"]["spec"]
    assert "initContainers" not in ha_pod
    (models,) = [v for v in ha_pod["volumes"] if v["name"] == "models"]
    assert models["persistentVolumeClaim"]["claimName"] == "edgegate-models"
    (mount,) = [m for m in ha_pod["containers"][0]["volumeMounts"] if m["name"] == "models"]
    assert mount["readOnly"] is True


def test_the_operator_runs_inference_with_the_charts_image_and_nats() -> None:
    objects = render_set("production-ha")
    operator = find(objects, "Deployment", f"{RELEASE}-edgegate-operator")
    variables = env(operator["spec"]["template"]["spec"]["containers"][0])
    inference = find(objects, "Deployment", f"{RELEASE}-edgegate-inference")
    assert (
        variables["EDGEGATE_OPERATOR_INFERENCE_IMAGE"]
        == (inference["spec"]["template"]["spec"]["containers"][0]["image"])
    )
    assert variables["EDGEGATE_OPERATOR_INFERENCE_IMAGE"].startswith(
        "registry.example.com/platform/edgegate/inference:"
    )
    assert (
        variables["EDGEGATE_OPERATOR_INFERENCE_NATS_URL"] == variables["EDGEGATE_OPERATOR_NATS_URL"]
    )
    assert variables["EDGEGATE_OPERATOR_PEERING"] == f"{RELEASE}-edgegate-operator"
    find(objects, "ClusterKopfPeering", f"{RELEASE}-edgegate-operator")
    assert operator["spec"]["replicas"] == 2


def test_a_single_operator_runs_standalone() -> None:
    objects = render_set("minimal")
    operator = find(objects, "Deployment", f"{RELEASE}-edgegate-operator")
    assert "EDGEGATE_OPERATOR_PEERING" not in env(
        operator["spec"]["template"]["spec"]["containers"][0]
    )
    assert not [o for o in objects if o["kind"].endswith("KopfPeering")]


def test_watching_namespaces_grants_roles_there_only() -> None:
    objects = render((), ("operator.watchNamespaces={team-a,team-b}",))
    (cluster_role,) = [o for o in objects if o["kind"] == "ClusterRole"]
    assert cluster_role["metadata"]["name"].endswith("-discovery")
    assert {r for rule in cluster_role["rules"] for r in rule["resources"]} == {
        "customresourcedefinitions",
        "namespaces",
    }
    assert {v for rule in cluster_role["rules"] for v in rule["verbs"]} == {"list", "watch"}
    roles = {o["metadata"]["namespace"] for o in objects if o["kind"] == "Role"}
    bindings = {o["metadata"]["namespace"] for o in objects if o["kind"] == "RoleBinding"}
    peerings = {o["metadata"]["namespace"] for o in objects if o["kind"] == "KopfPeering"}
    assert roles == bindings == peerings == {"team-a", "team-b"}
    operator = find(objects, "Deployment", f"{RELEASE}-edgegate-operator")
    assert (
        env(operator["spec"]["template"]["spec"]["containers"][0])["EDGEGATE_OPERATOR_NAMESPACES"]
        == "team-a,team-b"
    )


def test_the_operator_may_do_only_what_it_does() -> None:
    (role,) = [o for o in render_set("defaults") if o["kind"] == "ClusterRole"]
    granted = {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    assert ("", "secrets", "get") in granted
    assert not {g for g in granted if g[1] == "secrets" and g[2] != "get"}  # no list, no watch
    assert not {g for g in granted if "*" in g}
    assert not {g for g in granted if g[1] in ("pods", "nodes", "clusterroles", "rolebindings")}
    assert ("apps", "deployments", "create") in granted
    assert ("edgegate.io", "modeldeployments/status", "patch") in granted
    assert ("kopf.dev", "clusterkopfpeerings", "patch") in granted


def secret_files(objects: Sequence[Obj], name: str) -> dict[str, bytes]:
    secret = find(objects, "Secret", name)
    return {key: base64.b64decode(value) for key, value in secret["data"].items()}


def test_the_chart_makes_signing_keys_once_and_keeps_them() -> None:
    objects = render_set("defaults")
    name = f"{RELEASE}-edgegate-security-keys"
    secret = find(objects, "Secret", name)
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    files = secret_files(objects, name)
    key = serialization.load_pem_private_key(files["signing.pem"], password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
    assert len(files["pii.key"]) == 64
    deployment = find(objects, "Deployment", f"{RELEASE}-edgegate-security")
    pod = deployment["spec"]["template"]["spec"]
    (keys,) = [v for v in pod["volumes"] if v["name"] == "keys"]
    assert keys["secret"]["secretName"] == name
    variables = env(pod["containers"][0])
    assert variables["EDGEGATE_SECURITY_KEYS_DIR"] == "/etc/edgegate/keys"
    assert variables["EDGEGATE_SECURITY_PII_SECRETS_FILE"] == "/etc/edgegate/keys/pii.key"
    # On upgrade the chart reads the Secret back (lookup) instead of making new keys.
    template = (CHART / "templates" / "security.yaml").read_text(encoding="utf-8")
    assert 'lookup "v1" "Secret" .Release.Namespace $keysSecret' in template


def test_an_existing_key_secret_is_used_and_none_is_made() -> None:
    objects = render_set("production-ha")
    assert not [o for o in objects if o["kind"] == "Secret"]
    deployment = find(objects, "Deployment", f"{RELEASE}-edgegate-security")
    (keys,) = [v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "keys"]
    assert keys["secret"]["secretName"] == "edgegate-signing-keys"


def test_the_fallback_key_comes_from_its_secret_as_a_file() -> None:
    deployment = find(render_set("production-ha"), "Deployment", f"{RELEASE}-edgegate-gateway")
    pod = deployment["spec"]["template"]["spec"]
    variables = env(pod["containers"][0])
    assert "EDGEGATE_GATEWAY_FALLBACK_API_KEY" not in variables  # a file, not the environment
    assert variables["EDGEGATE_GATEWAY_FALLBACK_API_KEY_FILE"] == "/etc/edgegate/fallback/api-key"
    (volume,) = [v for v in pod["volumes"] if v["name"] == "fallback-key"]
    assert volume["secret"]["secretName"] == "edgegate-fallback"
    assert volume["secret"]["items"] == [{"key": "api-key", "path": "api-key"}]
    mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    assert mounts["fallback-key"] == "/etc/edgegate/fallback"
    assert variables["EDGEGATE_GATEWAY_FALLBACK_URL"] == "https://api.openai.com/v1"


def test_ingress_and_http_route_reach_the_gateway_http_port() -> None:
    ingress = find(render_set("production-ha"), "Ingress", f"{RELEASE}-edgegate-gateway")
    (rule,) = ingress["spec"]["rules"]
    backend = rule["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": f"{RELEASE}-edgegate-gateway", "port": {"name": "http"}}
    assert ingress["spec"]["tls"][0]["hosts"] == ["ai.example.com"]
    objects = render(
        (),
        ("gateway.httpRoute.enabled=true", "gateway.httpRoute.parentRefs[0].name=public"),
    )
    route = find(objects, "HTTPRoute", f"{RELEASE}-edgegate-gateway")
    assert route["spec"]["rules"][0]["backendRefs"] == [
        {"name": f"{RELEASE}-edgegate-gateway", "port": 80}
    ]


def test_the_helm_test_asks_the_gateway_health_service() -> None:
    objects = render_set("defaults")
    (pod,) = [o for o in objects if o["kind"] == "Pod"]
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    (container,) = pod["spec"]["containers"]
    assert container["command"] == ["python", "-m", "edgegate_common.rpc.probe"]
    service = find(objects, "Service", f"{RELEASE}-edgegate-gateway")
    (grpc_port,) = [p["port"] for p in service["spec"]["ports"] if p["name"] == "grpc"]
    assert container["args"][0] == f"{RELEASE}-edgegate-gateway:{grpc_port}"


def test_autoscaled_deployments_leave_replicas_to_the_autoscaler() -> None:
    objects = render_set("production-ha")
    for name in ("gateway", "inference", "taskstore", "security"):
        hpa = find(objects, "HorizontalPodAutoscaler", f"{RELEASE}-edgegate-{name}")
        assert hpa["spec"]["scaleTargetRef"]["name"] == f"{RELEASE}-edgegate-{name}"
        assert "replicas" not in find(objects, "Deployment", f"{RELEASE}-edgegate-{name}")["spec"]
    assert not [o for o in render_set("defaults") if o["kind"] == "HorizontalPodAutoscaler"]


def test_every_component_has_a_disruption_budget() -> None:
    objects = render_set("production-ha")
    budgets = {component(o) for o in objects if o["kind"] == "PodDisruptionBudget"}
    assert budgets == {"nats", "gateway", "inference", "taskstore", "security", "operator"}


def test_the_crds_ship_in_crds_and_the_examples_fit_them() -> None:
    shipped = sorted(p.name for p in (CHART / "crds").glob("*.yaml"))
    assert shipped == [
        "clusterkopfpeerings.kopf.dev.yaml",
        "kopfpeerings.kopf.dev.yaml",
        "modeldeployments.edgegate.io.yaml",
        "tenantquotas.edgegate.io.yaml",
    ]
    # Helm installs crds/ before the templates and never deletes them: nothing renders a CRD.
    assert not [o for o in render_set("production-ha") if o["kind"] == "CustomResourceDefinition"]


def test_notes_say_how_to_reach_the_gateway_and_get_a_token(tmp_path: Path) -> None:
    result = run_helm("install", RELEASE, str(CHART), "--dry-run=client", "--namespace", NAMESPACE)
    assert result.returncode == 0, result.stderr
    notes = result.stdout.split("NOTES:", 1)[1]
    assert f"port-forward svc/{RELEASE}-edgegate-gateway 8080:80 50051:50051" in notes
    assert "python -m edgegate_security.tools token issue --keys-dir /etc/edgegate/keys" in notes


@pytest.mark.parametrize("algorithm", ["ES256", "EdDSA", "RS256"])
async def test_the_security_service_signs_with_the_key_helm_made(
    algorithm: str, tmp_path: Path
) -> None:
    """helm's genPrivateKey output, laid out as the Secret mounts it, is a ring that signs."""
    objects = render((), (f"security.signingKeys.algorithm={algorithm}",))
    for name, data in secret_files(objects, f"{RELEASE}-edgegate-security-keys").items():
        (tmp_path / name).write_bytes(data)
    ring = KeyRing.open(tmp_path, max_token_ttl_s=3600)
    assert ring.signing_key.alg == algorithm
    token = TokenIssuer(ring, issuer="edgegate", audience="edgegate").issue(
        tenant="acme", subject="alice", scopes=["infer:*"], ttl_s=600
    )
    policy = TokenPolicy(issuers=frozenset({"edgegate"}), audience="edgegate")
    assert (await TokenVerifier(policy=policy, ring=ring).verify(token.token)).subject == "alice"
    assert sorted(os.listdir(tmp_path)) == ["pii.key", "signing.pem"]  # nothing written
