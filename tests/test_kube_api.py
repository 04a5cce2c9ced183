"""The Kubernetes facade over the wire: retries, fast failures, wrapped errors, the context
allowlist, and the guardrails and dry run as the CLI shows them."""

from __future__ import annotations

import ast
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import urllib3
from click.testing import CliRunner
from kubernetes.client.exceptions import ApiException

from drillkit.cli import main
from drillkit.errors import DrillkitError, InputError, TransientError
from drillkit.kube import (
    Forbidden,
    Kube,
    KubeError,
    KubeTransient,
    NotFound,
    context_allowed,
    resolve_settings,
    translate,
)
from drillkit.signals import StopFlag
from tests.helpers import write_scenario
from tests.kube_drill import scenario
from tests.kubecluster import CONTEXT, PROD_CONTEXT, KubeServer
from tests.promfixture import PromEnv

pytestmark = pytest.mark.wire
NS = "chatbot"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def kube(kube_demo: KubeServer) -> Any:
    k = Kube(resolve_settings(None, CONTEXT, (), kube_demo.kubeconfig_path))
    yield k
    k.close()


def pod_gets(server: KubeServer) -> int:
    return sum(1 for r in server.requests if r.method == "GET" and r.path == f"/api/v1/namespaces/{NS}/pods")


def test_429_is_retried_after_retry_after(kube_demo: KubeServer, kube: Kube) -> None:
    kube_demo.inject_error("GET", f"/namespaces/{NS}/pods", status=429, retry_after=1)
    start = time.monotonic()
    pods = kube.list_pods(NS, "app=chatbot-api")
    took = time.monotonic() - start
    assert len(pods) == 3
    assert pod_gets(kube_demo) == 2, "expected exactly one retry"
    assert took >= 1.0, f"Retry-After: 1 not honoured: retried after {took:.2f}s"


def test_500_and_dropped_connections_are_retried(kube_demo: KubeServer, kube: Kube) -> None:
    kube_demo.inject_error("GET", f"/namespaces/{NS}/pods", status=500)
    assert len(kube.list_pods(NS, "app=chatbot-api")) == 3
    assert pod_gets(kube_demo) == 2
    kube_demo.inject_error("GET", "/deployments/chatbot-api", drop_connection=True)
    w = kube.get_workload("Deployment", NS, "chatbot-api")
    assert w is not None and w.replicas == 3


def test_403_fails_fast_naming_verb_and_resource(kube_demo: KubeServer, kube: Kube) -> None:
    kube_demo.inject_error(
        "DELETE",
        "/pods/",
        status=403,
        times=5,
        message='pods "x" is forbidden: User "drill" cannot delete resource "pods"',
    )
    name = kube.list_pods(NS, "app=chatbot-api")[0].name
    start = time.monotonic()
    with pytest.raises(Forbidden) as info:
        kube.delete_pod(NS, name)
    assert time.monotonic() - start < 2.0, "a 403 must not be retried"
    deletes = [r for r in kube_demo.requests if r.method == "DELETE"]
    assert len(deletes) == 1, deletes
    msg = str(info.value)
    assert f"cannot delete pods {NS}/{name}" in msg and "forbidden" in msg, msg


def test_other_4xx_are_not_retried(kube_demo: KubeServer, kube: Kube) -> None:
    kube_demo.inject_error("PATCH", "/scale", status=422, times=5)
    with pytest.raises(KubeError) as info:
        kube.scale("Deployment", NS, "chatbot-api", 1)
    assert info.value.status == 422
    assert len([r for r in kube_demo.requests if r.method == "PATCH"]) == 1


CALLS = [
    ("list_pods", lambda k: k.list_pods(NS, "app=chatbot-api")),
    ("get_pod", lambda k: k.get_pod(NS, "x")),
    ("get_workload", lambda k: k.get_workload("Deployment", NS, "chatbot-api")),
    ("scale", lambda k: k.scale("Deployment", NS, "chatbot-api", 2)),
    ("restart_workload", lambda k: k.restart_workload("Deployment", NS, "chatbot-api", "now")),
    ("secret_data", lambda k: k.secret_data(NS, "chatbot-jwt")),
    ("create_job", lambda k: k.create_job(NS, {"metadata": {"name": "j"}, "spec": {}})),
    ("delete_job", lambda k: k.delete_job(NS, "j")),
    ("evict", lambda k: k.evict(NS, "x", time.monotonic() + 0.1)),
    ("cordon", lambda k: k.cordon("kind-drillkit-worker", "r")),
    ("labelled", lambda k: k.labelled("r")),
    ("exec", lambda k: k.exec(NS, "chatbot-db-0", "postgres", ["true"])),
    ("wait_pods", lambda k: k.wait_pods(NS, "app=x", lambda pods: False, 0.3)),
    ("add_ephemeral_container", lambda k: k.add_ephemeral_container(NS, "x", {"name": "e"})),
]


def test_no_kubernetes_exception_escapes(kube_demo: KubeServer, kube: Kube) -> None:
    """Every facade call, every 4xx the server can answer: only drillkit errors come out."""
    escaped = []
    for status in (400, 401, 403, 404, 409, 410, 422):
        for name, call in CALLS:
            kube_demo.clear_injections()
            kube_demo.inject_error(None, "/", status=status, times=1000)
            try:
                call(kube)
            except DrillkitError:
                pass  # wrapped: NotFound, Forbidden, KubeError, ...
            except BaseException as exc:  # the point of the test
                escaped.append(f"{name} on {status}: {type(exc).__module__}.{type(exc).__name__}: {exc}")
    kube_demo.clear_injections()
    assert not escaped, "\n".join(escaped)


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (ApiException(status=429, reason="Too Many Requests"), KubeTransient),
        (ApiException(status=503, reason="Unavailable"), KubeTransient),
        (ApiException(status=403, reason="Forbidden"), Forbidden),
        (ApiException(status=404, reason="Not Found"), NotFound),
        (ApiException(status=0, reason="Handshake status 404 Not Found -+-+- {} -+-+- b'{}'"), NotFound),
        (urllib3.exceptions.MaxRetryError(None, "/", "refused"), KubeTransient),
        (urllib3.exceptions.ProtocolError("Connection aborted."), KubeTransient),
        (ConnectionResetError("reset"), KubeTransient),
    ],
)
def test_translate_classifies(exc: BaseException, kind: type) -> None:
    out = translate("get pods chatbot/x", exc)
    assert isinstance(out, kind) and isinstance(out, DrillkitError), (exc, out)
    assert isinstance(out, TransientError) == (kind is KubeTransient)


def test_only_kube_module_imports_kubernetes() -> None:
    offenders = []
    for path in (ROOT / "drillkit").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            if any(n == "kubernetes" or n.startswith("kubernetes.") for n in names):
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders and all(o.startswith("drillkit/kube/") for o in offenders), offenders


# --- context allowlist --------------------------------------------------------------------------


def test_context_allowlist(kube_server: KubeServer) -> None:
    cfg = kube_server.kubeconfig_path
    assert context_allowed("kind-drillkit", ()) and not context_allowed("prod-cluster", ())
    assert resolve_settings(None, None, (), cfg).context == CONTEXT  # current-context, kind-*
    with pytest.raises(InputError, match=r"refusing kubeconfig context 'prod-cluster'.*--allow-context prod-cluster"):
        resolve_settings(None, PROD_CONTEXT, (), cfg)  # named by the scenario: still refused
    with pytest.raises(InputError, match="refusing kubeconfig context 'prod-cluster'"):
        resolve_settings(PROD_CONTEXT, CONTEXT, (), cfg)  # --context
    assert resolve_settings(None, PROD_CONTEXT, (PROD_CONTEXT,), cfg).context == PROD_CONTEXT
    with pytest.raises(InputError, match=r"'kind-nope' not found; available: kind-drillkit-test, prod-cluster"):
        resolve_settings("kind-nope", None, (), cfg)


@pytest.mark.parametrize(
    ("server", "allowed"),
    [
        ("https://127.0.0.1:40123", True),
        ("https://[::1]:6443", True),
        ("https://localhost:6443", True),
        ("https://prod-api.example.com:6443", False),
        ("https://10.0.0.12:6443", False),
    ],
)
def test_a_kind_context_must_point_at_loopback(tmp_path: Path, server: str, allowed: bool) -> None:
    """A production context renamed `kind-x` is not a kind cluster: kind serves its API on
    loopback. Explicitly allowed contexts are not checked further."""
    import yaml

    cfg = tmp_path / "kubeconfig"
    cfg.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": server}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "kind-x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "kind-x",
            }
        )
    )
    if allowed:
        assert resolve_settings(None, None, (), str(cfg)).context == "kind-x"
    else:
        with pytest.raises(InputError, match="not on loopback"):
            resolve_settings(None, None, (), str(cfg))
    assert resolve_settings(None, None, ("kind-x",), str(cfg)).context == "kind-x"


def test_a_kind_context_must_reach_the_kind_cluster_it_names(kube_server: KubeServer, tmp_path: Path) -> None:
    """Loopback is not enough: a `kubectl proxy` (plain HTTP) or an SSH tunnel to another cluster
    (TLS, but a certificate for another cluster's names) is on 127.0.0.1 too. The test cluster's
    `kind-drillkit-test` serves TLS with a certificate naming `drillkit-test-control-plane`, as a
    kind cluster's does; the same server under the name `kind-other` is refused, and so is a plain
    HTTP server on loopback; either is allowed by name (`--allow-context`)."""
    import base64
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import yaml

    from drillkit.kube import Kube

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    ca = base64.b64encode(kube_server.plane.ca.read_bytes()).decode()
    clusters = {
        "tunnel": {"server": kube_server.url, "certificate-authority-data": ca},
        "proxy": {"server": f"http://127.0.0.1:{httpd.server_address[1]}"},
    }
    contexts = {"kind-drillkit-test": "tunnel", "kind-other": "tunnel", "kind-proxy": "proxy"}
    cfg = tmp_path / "kubeconfig"
    cfg.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": n, "cluster": c} for n, c in clusters.items()],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": n, "context": {"cluster": c, "user": "u"}} for n, c in contexts.items()],
                "current-context": "kind-drillkit-test",
            }
        )
    )
    try:
        Kube(resolve_settings(None, "kind-drillkit-test", (), str(cfg))).close()
        with pytest.raises(InputError, match=r"certificate for .*drillkit-test-control-plane.*, not for other-control"):
            Kube(resolve_settings(None, "kind-other", (), str(cfg)))
        with pytest.raises(InputError, match=r"'kind-proxy'.* speaks plain HTTP, as a `kubectl proxy` does"):
            Kube(resolve_settings(None, "kind-proxy", (), str(cfg)))
        for name in ("kind-other", "kind-proxy"):
            Kube(resolve_settings(None, name, (name,), str(cfg))).close()
    finally:
        httpd.shutdown()
        httpd.server_close()
    asked = [r.path for r in kube_server.requests]
    assert asked == [], f"the check sent API requests: {asked}"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("apiVersion: v1\nclusters: [\n  - name: x\ncontexts: {\n", "is not valid YAML, line 3, column 3"),
        ("- just\n- a list\n", "is malformed (not a kubeconfig document)"),
    ],
)
def test_malformed_kubeconfig_is_one_line_exit_2(tmp_path: Path, text: str, words: str) -> None:
    bad = tmp_path / "kubeconfig"
    bad.write_text(text)
    path = write_scenario(tmp_path / "d.yaml", scenario([{"kind": "pod-kill", "selector": "app=x"}]))
    for args in (
        ["run", str(path), "--report-dir", str(tmp_path / "r")],
        ["cleanup", "--all", "--report-dir", str(tmp_path / "r")],
    ):
        r = CliRunner().invoke(main, [*args, "--kubeconfig", str(bad)])
        assert r.exit_code == 2, f"{args[0]}: exit {r.exit_code}: {r.exception!r}\n{r.stderr}"
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and f"kubeconfig {bad} {words}" in lines[0], (args[0], r.stderr)
        assert "Traceback" not in r.output + r.stderr


def test_evict_gives_up_when_stopped(kube_demo: KubeServer, kube: Kube) -> None:
    kube_demo.seed(
        {
            "kind": "PodDisruptionBudget",
            "metadata": {"name": "api", "namespace": NS},
            "spec": {"minAvailable": 3, "selector": {"matchLabels": {"app": "chatbot-api"}}},
        }
    )
    name = kube.list_pods(NS, "app=chatbot-api")[0].name
    stop = StopFlag()
    threading.Timer(0.5, stop.set, args=("received SIGTERM",)).start()
    start = time.monotonic()
    result = kube.evict(NS, name, time.monotonic() + 15, stop)
    took = time.monotonic() - start
    assert took < 5.0, f"evict ignored the stop flag for {took:.1f}s ({result})"
    assert result == "not evicted: the drill is stopping", result
    assert kube_demo.get("pods", NS, name) is not None
    assert kube.evict(NS, name, time.monotonic() + 15, stop) == result  # set before: no request


def test_leftovers_wait_ends_when_stopped(kube_demo: KubeServer, kube: Kube) -> None:
    kube_demo.seed(
        {"kind": "Secret", "metadata": {"name": "left", "namespace": NS, "labels": {"drillkit.io/run-id": "r1"}}}
    )
    stop = StopFlag()
    threading.Timer(0.3, stop.set, args=("received SIGTERM",)).start()
    start = time.monotonic()
    left = kube.leftovers("r1", wait=30.0, stop=stop, namespaces=[NS])
    assert time.monotonic() - start < 5.0
    assert [str(x) for x in left] == [f"Secret {NS}/left (uid {left[0].uid})"]


def cli_run(path: Path, prom: PromEnv, server: KubeServer, *extra: str) -> Any:
    return CliRunner().invoke(
        main, ["run", str(path), "--prometheus-url", prom.url, "--kubeconfig", server.kubeconfig_path, *extra]
    )


def writes(server: KubeServer, lock: bool = False) -> list[str]:
    """Requests that changed something; the drill lock's own (a Lease) only with `lock`."""
    return [
        f"{r.method} {r.path}"
        for r in server.requests
        if r.method != "GET" and r.query.get("dryRun") != "All" and (lock or "/leases" not in r.path)
    ]


def test_cli_refuses_non_kind_context(kube_demo: KubeServer, prom_env: PromEnv, tmp_path: Path) -> None:
    path = write_scenario(
        tmp_path / "d.yaml", scenario([{"kind": "pod-kill", "selector": "app=chatbot-api"}], context=PROD_CONTEXT)
    )
    r = cli_run(path, prom_env, kube_demo, "--report-dir", str(tmp_path / "r"))
    assert r.exit_code == 2, r.output + r.stderr
    assert "refusing kubeconfig context 'prod-cluster'" in r.stderr
    assert not kube_demo.requests, "nothing may be sent to a refused cluster"
    r = cli_run(path, prom_env, kube_demo, "--dry-run", "--allow-context", PROD_CONTEXT)
    assert r.exit_code == 0, r.output + r.stderr


# --- guardrails and dry run -----------------------------------------------------------------------


def test_dry_run_prints_exact_objects_and_touches_nothing(
    kube_demo: KubeServer, prom_env: PromEnv, tmp_path: Path
) -> None:
    path = write_scenario(
        tmp_path / "d.yaml",
        scenario(
            [
                {"kind": "pod-kill", "selector": "app=chatbot-api", "count": 1, "pick": "oldest"},
                {"kind": "scale-to-zero", "workload": "statefulset/chatbot-db"},
                {"kind": "auth-secret-corruption", "secret": "chatbot-jwt", "key": "jwt-secret"},
            ],
            guardrails={"max_targets": "100%"},
        ),
    )
    r = cli_run(path, prom_env, kube_demo, "--dry-run", "--report-dir", str(tmp_path / "r"))
    assert r.exit_code == 0, r.output + r.stderr
    oldest = min(
        kube_demo.list("pods", NS, "app=chatbot-api"),
        key=lambda p: (p["metadata"]["creationTimestamp"], p["metadata"]["name"]),
    )
    db = kube_demo.get("pods", NS, "chatbot-db-0")
    sts = kube_demo.get("statefulsets", NS, "chatbot-db")
    deploy = kube_demo.get("deployments", NS, "chatbot-api")
    assert db and sts and deploy
    for text in (
        f"pod-kill: delete Pod {NS}/{oldest['metadata']['name']} (uid {oldest['metadata']['uid']})",
        f"scale-to-zero: scale StatefulSet {NS}/chatbot-db (uid {sts['metadata']['uid']}) from 1 to 0",
        f"Pod {NS}/chatbot-db-0 (uid {db['metadata']['uid']})",
        f"auth-secret-corruption: restart Deployment {NS}/chatbot-api (uid {deploy['metadata']['uid']})",
    ):
        assert text in r.stderr, f"dry run lacks {text!r}:\n{r.stderr}"
    assert writes(kube_demo, lock=True) == [], f"dry run wrote to the cluster: {writes(kube_demo, lock=True)}"
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    ("fault", "extra", "words"),
    [
        (
            {"kind": "pod-kill", "selector": "app=chatbot-api", "count": 3},
            {},
            "3 of 3 pods matching selector 'app=chatbot-api' exceed the blast radius guardrails.max_targets = 50%",
        ),
        (
            {"kind": "pod-kill", "selector": "app=chatbot-api", "count": "100%"},
            {"guardrails": {"max_targets": 2}},
            "exceed the blast radius guardrails.max_targets = 2",
        ),
        (
            {"kind": "pod-kill", "selector": "app=nothing"},
            {},
            "no pod in namespace chatbot matches selector 'app=nothing'",
        ),
        (
            {"kind": "pod-kill", "selector": "component=dns"},
            {"namespace": "kube-system"},
            "namespace 'kube-system' is protected",
        ),
        (
            {"kind": "pod-kill", "selector": "app=chatbot-api", "namespace": "kube-public"},
            {},
            "namespace 'kube-public' is protected",
        ),
        ({"kind": "bad-rollout", "workload": "deployment/nope"}, {}, "Deployment chatbot/nope not found"),
        (
            {"kind": "auth-secret-corruption", "secret": "chatbot-jwt", "key": "nope"},
            {},
            "has no key 'nope' (keys: jwt-secret)",
        ),
    ],
)
def test_guardrails_refuse_before_touching_anything(
    kube_demo: KubeServer, prom_env: PromEnv, tmp_path: Path, fault: dict[str, Any], extra: dict[str, Any], words: str
) -> None:
    path = write_scenario(tmp_path / "d.yaml", scenario([fault], **extra))
    r = cli_run(path, prom_env, kube_demo, "--report-dir", str(tmp_path / "r"))
    assert r.exit_code == 3, r.output + r.stderr
    assert words in r.stderr, r.stderr
    assert writes(kube_demo) == []
    if "protected" in words:  # not even the drill lock is written there
        assert not [w for w in writes(kube_demo, lock=True) if "/namespaces/kube-" in w], writes(kube_demo, lock=True)
    else:  # the lock was taken before preflight and released
        assert kube_demo.list("leases", "chatbot") == []


def test_protected_namespace_allowed_when_listed(kube_demo: KubeServer, prom_env: PromEnv, tmp_path: Path) -> None:
    kube_demo.seed(
        {
            "kind": "Pod",
            "metadata": {"name": "coredns-x", "namespace": "kube-system", "labels": {"k8s-app": "kube-dns"}},
            "spec": {"containers": [{"name": "dns", "image": "coredns:1.11"}]},
        }
    )
    path = write_scenario(
        tmp_path / "d.yaml",
        scenario(
            [{"kind": "pod-kill", "selector": "k8s-app=kube-dns"}],
            namespace="kube-system",
            guardrails={"allow_namespaces": ["kube-system"], "max_targets": "100%"},
        ),
    )
    r = cli_run(path, prom_env, kube_demo, "--dry-run")
    assert r.exit_code == 0, r.output + r.stderr
    assert "delete Pod kube-system/coredns-x" in r.stderr


@pytest.mark.parametrize("path", sorted((ROOT / "scenarios" / "k8s").glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_k8s_scenario_preflights_on_the_demo_platform(
    kube_demo: KubeServer, tmp_path: Path, path: Path
) -> None:
    """Each scenarios/k8s drill resolves its targets on the demo platform and plans exact objects
    (context overridden to the test cluster's; nothing is written)."""
    from drillkit.faults import FaultContext, fault_class
    from drillkit.journal import Journal
    from drillkit.kube import kube_factory_for
    from drillkit.scenario import load_scenario

    sc = load_scenario(path)
    journal = Journal(tmp_path / "journal.jsonl")
    ctx = FaultContext(
        run_id="cafe0001",
        scenario=sc,
        journal=journal,
        stop=StopFlag(),
        log=lambda _: None,
        kube_factory=kube_factory_for(sc, CONTEXT, (), kube_demo.kubeconfig_path),
    )
    lines = []
    for spec in sc.faults:
        fault = fault_class(spec.kind, "kubernetes")(spec.params, ctx)
        lines += fault.plan(fault.preflight())
    journal.close()
    assert lines and any("(uid " in line for line in lines), lines
    assert writes(kube_demo) == [], writes(kube_demo)


def test_leftovers_list_only_in_the_namespaces_written_to(kube_demo: KubeServer, kube: Kube) -> None:
    """No cluster-wide Secret listing (a privilege the documented Role does not grant)."""
    kube.create_secret(NS, "mine", {}, {"drillkit.io/run-id": "r2"}, {})
    kube_demo.proxy.requests.clear()  # (`requests` is a copy)
    left = kube.leftovers("r2")
    assert [x.name for x in left] == ["mine"]
    paths = sorted({r.path for r in kube_demo.requests})
    assert all(f"/namespaces/{NS}/" in p for p in paths), f"listed outside {NS}: {paths}"
