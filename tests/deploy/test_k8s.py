"""deploy/k8s renders, validates against the Kubernetes schemas offline and keeps its invariants.

Every kustomization target (the single-region ``base`` and each ``overlays/<region>``) is
rendered with ``kubectl kustomize`` and every object is validated with kubernetes-validate
against strict schemas (unknown fields are errors). Strimzi ``KafkaTopic`` (a CRD, no schema
there) is checked structurally. The invariants tie the manifests to the code: the ingress routes
to ``shared/routes.py``, the topics to ``shared/events/topics.py``, the ConfigMap to
``shared/settings.py`` and the region hostnames to ``shared/lti/urls.ToolUrls``.

No cluster is needed: kubectl only renders (scripts/bootstrap installs it when missing).
"""

from __future__ import annotations

import ipaddress
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version

from shared.events import topics
from shared.lti.urls import ToolUrls
from shared.routes import PUBLIC_ROUTES, SERVICES
from shared.settings import Settings, env_var_names, load_settings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = sorted(
    p.name for p in (K8S / "overlays").iterdir() if (p / "kustomization.yaml").is_file()
)
TARGETS = ["base", *(f"overlays/{name}" for name in OVERLAYS)]

# The oldest Kubernetes the manifests claim to support, and the newest the schemas know.
KUBERNETES_VERSIONS = ("1.29", latest_version())

NAMESPACE = "attune"
UID = 10001
PORT = 8080
CELL = {"login", "launch", "checkins"}
HOME = {"registration", "jwks"}
AUTOSCALED = {"login", "launch", "checkins"}
CALLS_PLATFORMS = {"launch", "registration", "checkins"}  # HTTPS to LMS endpoints
SECRETS = {"attune-database", "attune-kafka", "attune-secrets"}
# Credentials for another region's Kafka: a cell's at the home cluster (the mirror in launch),
# the home region's at the other cells' clusters (registration, jwks). Optional: a
# single-region install has neither.
CROSS_REGION_SECRETS = {
    "launch": "attune-home-kafka",
    "registration": "attune-cell-kafka",
    "jwks": "attune-cell-kafka",
}
SECRET_VAR = re.compile(r"DATABASE_URL|PASSWORD|SECRET|KEYS")
KNOWN_VARS = set(env_var_names().values())
INGRESS_NAMESPACES = {"ingress-nginx", "monitoring"}
PRIVATE_V4 = [
    ipaddress.IPv4Network(n)
    for n in (
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "169.254.0.0/16",
        "127.0.0.0/8",
    )
]
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
# IPv6 ranges that never reach a public host, or reach the IPv4 address they carry
# (shared/http.py is_public_address): each must be closed like the private IPv4 ranges.
CLOSED_V6 = [
    ipaddress.IPv6Network(n)
    for n in (
        "fc00::/7",
        "fe80::/10",
        "::1/128",
        "::/96",
        "::ffff:0:0/96",
        "::ffff:0:0:0/96",
        "64:ff9b:1::/48",
        "2002::/16",
        "2001::/32",
    )
] + [
    # NAT64: 64:ff9b::/96 followed by the IPv4 address (RFC 6052)
    ipaddress.IPv6Network((int(NAT64.network_address) + int(v4.network_address), 96 + v4.prefixlen))
    for v4 in PRIVATE_V4
]
# What a Secret would hold; only for building Settings from a rendered ConfigMap.
PLACEHOLDER_SECRETS = {
    "DATABASE_URL": "postgresql://attune:placeholder@postgres.example:5432/attune",
    "KAFKA_BOOTSTRAP_SERVERS": "kafka.example:9093",
}

Doc = dict[str, Any]
_rendered: dict[str, list[Doc]] = {}


def render(target: str) -> list[Doc]:
    if target not in _rendered:
        kubectl = shutil.which("kubectl")
        if kubectl is None:
            pytest.fail(
                "kubectl is missing: run scripts/bootstrap (installs Debian's kubernetes-client)"
            )
        result = subprocess.run(
            [kubectl, "kustomize", str(K8S / target)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, f"kubectl kustomize {target} failed:\n{result.stderr}"
        _rendered[target] = [d for d in yaml.safe_load_all(result.stdout) if d]
    return _rendered[target]


def of_kind(docs: list[Doc], kind: str) -> list[Doc]:
    return [d for d in docs if d["kind"] == kind]


def component(doc: Doc) -> str:
    return str(doc["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"])


def deployments(docs: list[Doc]) -> dict[str, Doc]:
    return {component(d): d for d in of_kind(docs, "Deployment")}


def pod_templates(docs: list[Doc]) -> list[tuple[str, Doc]]:
    """(component, pod template) of every Deployment and Job."""
    return [
        (component(d), d["spec"]["template"]) for d in docs if d["kind"] in ("Deployment", "Job")
    ]


def config_data(docs: list[Doc]) -> dict[str, str]:
    maps = [
        d for d in of_kind(docs, "ConfigMap") if d["metadata"]["name"].startswith("attune-config")
    ]
    assert len(maps) == 1, [d["metadata"]["name"] for d in maps]
    return {k: str(v) for k, v in maps[0]["data"].items()}


def settings_of(docs: list[Doc]) -> Settings:
    return load_settings({**config_data(docs), **PLACEHOLDER_SECRETS})


def is_home(docs: list[Doc]) -> bool:
    return "registration" in deployments(docs)


def labels_match(selector: Doc, labels: dict[str, str]) -> bool:
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions", []):
        present = expr["key"] in labels
        op = expr["operator"]
        if op == "In" and not (present and labels[expr["key"]] in expr["values"]):
            return False
        if op == "NotIn" and present and labels[expr["key"]] in expr["values"]:
            return False
        if op == "Exists" and not present:
            return False
        if op == "DoesNotExist" and present:
            return False
    return True


# --- rendering and schemas ---


@pytest.mark.parametrize("target", TARGETS)
def test_renders_and_validates_against_kubernetes_schemas(target: str) -> None:
    docs = render(target)
    errors = []
    for doc in docs:
        ident = f"{doc['kind']}/{doc['metadata']['name']}"
        assert doc["metadata"].get("namespace") == NAMESPACE, ident
        if doc["apiVersion"].startswith("kafka.strimzi.io/"):
            continue  # a CRD: checked by test_kafka_topics
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                path = ".".join(str(p) for p in exc.path)
                errors.append(f"{ident} (Kubernetes {version}): {path}: {exc.message}")
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("target", TARGETS)
def test_services_per_region(target: str) -> None:
    deployed = set(deployments(render(target)))
    if target == "base":
        assert deployed == set(SERVICES)
    else:
        assert deployed in (CELL, CELL | HOME), deployed


def test_exactly_one_home_region() -> None:
    homes = [name for name in OVERLAYS if is_home(render(f"overlays/{name}"))]
    assert len(homes) == 1, homes
    assert {"us-east-1", "eu-west-1", "ap-southeast-2"} <= set(OVERLAYS)


# --- secrets and settings ---


@pytest.mark.parametrize("target", TARGETS)
def test_secrets_are_only_referenced(target: str) -> None:
    docs = render(target)
    assert not of_kind(docs, "Secret"), "secret values never live in the repository"
    for key in config_data(docs):
        assert not SECRET_VAR.search(key), f"{key} belongs in a Secret, not the ConfigMap"
        assert key in KNOWN_VARS, f"ConfigMap key {key} is not an Attune setting"
    for name, template in pod_templates(docs):
        for container in template["spec"]["containers"]:
            env = {e["name"]: e for e in container.get("env", [])}
            assert "DATABASE_URL" in env, name
            for var, entry in env.items():
                assert var in KNOWN_VARS, f"{name}: {var} is not an Attune setting"
                if SECRET_VAR.search(var):
                    assert "value" not in entry, f"{name}: {var} must come from a Secret"
                    ref = entry["valueFrom"]["secretKeyRef"]
                    assert ref["name"] in SECRETS and ref["key"] == var, (name, ref)
                else:
                    assert "valueFrom" not in entry or "secretKeyRef" not in entry["valueFrom"]
            sources = container.get("envFrom", [])
            for source in sources:
                if "secretRef" in source:
                    ref = source["secretRef"]
                    assert ref["name"] in SECRETS | {CROSS_REGION_SECRETS.get(name)}, (name, ref)
                    assert ref.get("optional", False) == (ref["name"] not in SECRETS), (name, ref)
                else:
                    assert source["configMapRef"]["name"].startswith("attune-config"), name
            if name in SERVICES:
                refs = [s["secretRef"]["name"] for s in sources if "secretRef" in s]
                other = [CROSS_REGION_SECRETS[name]] if name in CROSS_REGION_SECRETS else []
                assert refs == ["attune-kafka", *other], f"{name}: Kafka endpoints and SASL"


@pytest.mark.parametrize("target", TARGETS)
def test_configmap_is_valid_production_settings(target: str) -> None:
    docs = render(target)
    settings = settings_of(docs)
    assert settings.env == "production"
    assert (settings.host, settings.port) == ("0.0.0.0", PORT)
    assert settings.kafka_create_topics is False  # topics are KafkaTopic resources
    assert not settings.allow_insecure_urls
    ToolUrls.from_settings(settings)  # public URL and region map are well-formed
    for name, deployment in deployments(docs).items():
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        literal = {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
        assert load_settings({**config_data(docs), **PLACEHOLDER_SECRETS, **literal}), name


# --- regions ---


def test_regions_map_and_hostnames_agree_across_overlays() -> None:
    rendered = {name: render(f"overlays/{name}") for name in OVERLAYS}
    maps = {name: config_data(docs).get("ATTUNE_REGIONS") for name, docs in rendered.items()}
    assert len(set(maps.values())) == 1, f"ATTUNE_REGIONS differs between overlays: {maps}"
    publics = {config_data(docs)["ATTUNE_PUBLIC_URL"] for docs in rendered.values()}
    assert len(publics) == 1, publics

    regional_hosts: dict[str, str] = {}
    for name, docs in rendered.items():
        (ingress,) = [i for i in of_kind(docs, "Ingress") if i["metadata"]["name"] == "attune-cell"]
        (rule,) = ingress["spec"]["rules"]
        regional_hosts[name] = rule["host"]

    for name, docs in rendered.items():
        urls = ToolUrls.from_settings(settings_of(docs))
        assert urls.region == name, "ATTUNE_REGION must name the overlay's region"
        assert set(urls.regions) == set(OVERLAYS), "every region has an overlay and vice versa"
        # The redirect URIs the registration service publishes (ToolUrls.redirect_uris)
        # contain every region's launch URL, at the host that region's Ingress serves.
        for region, host in regional_hosts.items():
            assert f"https://{host}/lti/launch" in urls.redirect_uris, (name, region)
            assert urls.launch_url(region) == f"https://{host}/lti/launch"
            assert urls.login_url(region) == f"https://{host}/lti/login"

    # One home region, which reads every other cell's Kafka; every other overlay is a cell that
    # reads the home's (and never lists cells itself).
    (home_name,) = [name for name, docs in rendered.items() if is_home(docs)]
    for name, docs in rendered.items():
        settings = settings_of(docs)
        if name == home_name:
            assert not settings.is_remote_cell
            assert set(settings.cells()) == set(OVERLAYS) - {home_name}
        else:
            assert settings.is_remote_cell and not settings.cells(), name
    for docs in (render("base"),):  # one region: a cell that is its own home
        assert not settings_of(docs).is_remote_cell and not settings_of(docs).cells()

    (home,) = [docs for docs in rendered.values() if is_home(docs)]
    (public,) = [i for i in of_kind(home, "Ingress") if i["metadata"]["name"] == "attune-public"]
    public_host = urlsplit(publics.pop()).hostname
    assert [r["host"] for r in public["spec"]["rules"]] == [public_host]


# --- ingress ---


@pytest.mark.parametrize("target", TARGETS)
def test_ingress_paths_are_the_public_routes(target: str) -> None:
    docs = render(target)
    services = {s["metadata"]["name"] for s in of_kind(docs, "Service")}
    deployed = set(deployments(docs))
    seen: dict[str, str] = {}
    for ingress in of_kind(docs, "Ingress"):
        spec = ingress["spec"]
        assert spec.get("ingressClassName"), ingress["metadata"]["name"]
        hosts = [rule["host"] for rule in spec["rules"]]
        assert sorted(h for tls in spec["tls"] for h in tls["hosts"]) == sorted(hosts)
        for rule in spec["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                assert path["pathType"] == "Prefix", path
                assert backend["port"] == {"name": "http"}, path
                assert backend["name"] in services, f"no Service {backend['name']}"
                assert path["path"] not in seen, f"{path['path']} is routed twice"
                seen[path["path"]] = backend["name"].removeprefix("attune-")
    expected = {prefix: service for prefix, service in PUBLIC_ROUTES if service in deployed}
    assert seen == expected
    if deployed == set(SERVICES):
        assert seen == dict(PUBLIC_ROUTES)


# --- workloads ---


@pytest.mark.parametrize("target", TARGETS)
def test_deployments_are_probed_sized_and_drain(target: str) -> None:
    docs = render(target)
    settings = settings_of(docs)
    images = set()
    for name, deployment in deployments(docs).items():
        assert deployment["metadata"]["name"] == f"attune-{name}"
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["args"] == ["serve", name]
        images.add(container["image"])
        assert {"name": "http", "containerPort": PORT, "protocol": "TCP"} in container["ports"]
        ready = container["readinessProbe"]["httpGet"]
        alive = container["livenessProbe"]["httpGet"]
        assert (ready["path"], ready["port"]) == ("/readyz", "http"), name
        assert (alive["path"], alive["port"]) == ("/healthz", "http"), name
        for kind in ("requests", "limits"):
            assert set(container["resources"][kind]) >= {"cpu", "memory"}, (name, kind)
        sleep = container["lifecycle"]["preStop"]["exec"]["command"]
        assert sleep[0] == "sleep", sleep
        grace = pod["terminationGracePeriodSeconds"]
        assert grace > settings.shutdown_timeout_s, name
        assert grace >= float(sleep[1]) + settings.shutdown_timeout_s + 5, (
            f"{name}: the grace period must cover the preStop sleep and the drain"
        )
        if name in AUTOSCALED:
            assert "replicas" not in deployment["spec"], f"{name}: the HPA owns replicas"
    for _, template in pod_templates(docs):
        images.add(template["spec"]["containers"][0]["image"])
    assert len(images) == 1, f"one image for every service and the job: {images}"
    (image,) = images
    name, _, tag = image.rpartition(":")
    assert name and tag and tag != "latest", f"pin the image tag: {image}"


@pytest.mark.parametrize("target", TARGETS)
def test_pods_run_unprivileged_on_a_read_only_root(target: str) -> None:
    docs = render(target)
    (account,) = of_kind(docs, "ServiceAccount")
    assert account["automountServiceAccountToken"] is False
    for name, template in pod_templates(docs):
        pod = template["spec"]
        assert pod["serviceAccountName"] == account["metadata"]["name"]
        assert pod["automountServiceAccountToken"] is False, name
        assert pod["enableServiceLinks"] is False, f"{name}: service links pollute the env"
        assert not pod.get("hostNetwork") and not pod.get("hostPID"), name
        ctx = pod["securityContext"]
        assert ctx["runAsNonRoot"] is True and ctx["runAsUser"] == UID, name
        assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}, name
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes.pop("postgres-ca") == POSTGRES_CA, name  # below
        assert all("emptyDir" in v for v in volumes.values()), name
        for container in pod["containers"]:
            sec = container["securityContext"]
            assert sec["runAsNonRoot"] is True and sec["runAsUser"] == UID, name
            assert sec["readOnlyRootFilesystem"] is True, name
            assert sec["allowPrivilegeEscalation"] is False, name
            assert sec["capabilities"] == {"drop": ["ALL"]}, name
            assert not sec.get("privileged"), name
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert "emptyDir" in volumes[mounts["/tmp"]], f"{name}: /tmp must be writable"


POSTGRES_CA = {"name": "postgres-ca", "configMap": {"name": "attune-postgres-ca", "optional": True}}


@pytest.mark.parametrize("target", TARGETS)
def test_every_pod_reading_the_database_can_verify_its_tls(target: str) -> None:
    """TLS to a managed Postgres: every pod with DATABASE_URL mounts the optional CA bundle
    ConfigMap read-only where DATABASE_URL's sslrootcert points (deploy/k8s/README.md)."""
    docs = render(target)
    readers = 0
    for name, template in pod_templates(docs):
        pod = template["spec"]
        for container in pod["containers"]:
            if "DATABASE_URL" not in {e["name"] for e in container.get("env", [])}:
                continue
            readers += 1
            assert POSTGRES_CA in pod["volumes"], name
            assert {
                "name": "postgres-ca",
                "mountPath": "/etc/attune/postgres-ca",
                "readOnly": True,
            } in container["volumeMounts"], name
    assert readers >= 2


@pytest.mark.parametrize("target", TARGETS)
def test_every_deployment_has_service_pdb_and_hpa_where_needed(target: str) -> None:
    docs = render(target)
    services = {s["metadata"]["name"]: s for s in of_kind(docs, "Service")}
    pdbs = of_kind(docs, "PodDisruptionBudget")
    hpas = {
        h["spec"]["scaleTargetRef"]["name"]: h for h in of_kind(docs, "HorizontalPodAutoscaler")
    }
    for name, deployment in deployments(docs).items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        full = f"attune-{name}"
        service = services[full]["spec"]
        assert labels_match({"matchLabels": service["selector"]}, labels), name
        assert service["ports"] == [
            {"name": "http", "port": PORT, "targetPort": "http", "protocol": "TCP"}
        ]
        assert [p for p in pdbs if labels_match(p["spec"]["selector"], labels)], f"{name}: PDB"
        if name in AUTOSCALED:
            hpa = hpas[full]
            assert hpa["apiVersion"] == "autoscaling/v2"
            assert hpa["spec"]["scaleTargetRef"]["kind"] == "Deployment"
            assert 2 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
            (metric,) = hpa["spec"]["metrics"]
            assert metric["resource"]["name"] == "cpu"
    assert set(hpas) <= {f"attune-{n}" for n in deployments(docs)}


@pytest.mark.parametrize("target", TARGETS)
def test_migration_job(target: str) -> None:
    docs = render(target)
    (job,) = of_kind(docs, "Job")  # every cell migrates its own database
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"] == ["migrate"]  # ENTRYPOINT is `attune`: runs `attune migrate`
    assert pod["restartPolicy"] == "Never"
    assert job["spec"]["backoffLimit"] >= 1
    assert job["metadata"]["annotations"]["argocd.argoproj.io/hook"] == "PreSync"
    # It runs before the new ConfigMap exists (PreSync), so it must not depend on it.
    assert not container.get("envFrom"), "the Job needs only DATABASE_URL"


@pytest.mark.parametrize("target", TARGETS)
def test_kafka_topics(target: str) -> None:
    docs = render(target)
    declared = of_kind(docs, "KafkaTopic")  # every cell declares them on its own Kafka
    names = []
    for topic in declared:
        assert topic["apiVersion"] == "kafka.strimzi.io/v1beta2"
        assert topic["metadata"]["labels"].get("strimzi.io/cluster"), "Topic Operator label"
        spec = topic["spec"]
        names.append(spec["topicName"])
        assert isinstance(spec["partitions"], int) and spec["partitions"] >= 1
        assert spec["partitions"] == topics.PARTITIONS.get(spec["topicName"], spec["partitions"])
        assert isinstance(spec["replicas"], int) and spec["replicas"] >= 3
        config = spec["config"]
        if spec["topicName"] == topics.REGISTRATION_STATE:
            # The latest state of every registration is kept (a new cell bootstraps from it).
            assert config["cleanup.policy"] == "compact" and "retention.ms" not in config
        else:
            assert config["cleanup.policy"] == "delete"
            assert isinstance(config["retention.ms"], int) and config["retention.ms"] > 0
        assert 2 <= config["min.insync.replicas"] < spec["replicas"]
        assert set(spec) == {"topicName", "partitions", "replicas", "config"}
    assert sorted(names) == sorted(topics.ALL)


# --- network policies ---


def _ports(rule: Doc) -> set[int]:
    return {int(p["port"]) for p in rule.get("ports", [])}


@pytest.mark.parametrize("target", TARGETS)
def test_network_policies_default_deny_and_least_privilege(target: str) -> None:
    docs = render(target)
    policies = of_kind(docs, "NetworkPolicy")
    for name, template in pod_templates(docs):
        labels = template["metadata"]["labels"]
        mine = [p["spec"] for p in policies if labels_match(p["spec"]["podSelector"], labels)]
        assert any(
            set(p["policyTypes"]) == {"Ingress", "Egress"}
            and not p.get("ingress")
            and not p.get("egress")
            for p in mine
        ), f"{name}: no default-deny policy selects it"

        ingress = [r for p in mine for r in p.get("ingress", [])]
        if name == "migrate":
            assert not ingress
        for rule in ingress:
            assert _ports(rule) == {PORT}, (name, rule)
            for peer in rule["from"]:
                assert set(peer) == {"namespaceSelector"}, (name, peer)
                ns = peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                assert ns in INGRESS_NAMESPACES, (name, ns)

        allowed = {53, 5432}
        if name in SERVICES:
            allowed |= {9092, 9093, 9094}
        if name in CALLS_PLATFORMS:
            allowed.add(443)
        egress = [r for p in mine for r in p.get("egress", [])]
        granted: set[int] = set()
        for rule in egress:
            ports = _ports(rule)
            assert ports, f"{name}: an egress rule without ports opens everything"
            granted |= ports
            if 53 in ports:
                assert ports == {53}
                for peer in rule["to"]:
                    ns = peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                    assert ns == "kube-system"
            if 443 in ports:
                assert ports == {443}
                for peer in rule["to"]:
                    block = peer["ipBlock"]
                    if ipaddress.ip_network(block["cidr"]).version == 4:
                        excepted = [ipaddress.IPv4Network(e) for e in block["except"]]
                        for private in PRIVATE_V4:
                            assert any(private.subnet_of(e) for e in excepted), (name, private)
                    else:
                        excepted6 = [ipaddress.IPv6Network(e) for e in block["except"]]
                        for closed in CLOSED_V6:
                            assert any(closed.subnet_of(e) for e in excepted6), (name, closed)
        assert granted == allowed, f"{name}: egress ports {sorted(granted)}"
