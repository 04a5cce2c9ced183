"""Which cluster a drill may touch: kubeconfig contexts, in-cluster config, the allowlist.

Why it exists: the context is checked before any client exists. By default only `kind-*`
contexts (disposable local clusters) are allowed, and only if what the name promises holds:
kind serves its API on the loopback interface, so a `kind-*` context whose API server is not on
127.0.0.1/::1/localhost (a renamed production context, say) is refused, and so, at the first
client, is one whose server is not the kind cluster it names (`check_kind`). Anything else, in-cluster
service accounts included, needs `--allow-context NAME`; an explicitly allowed context is not
checked further (the allowlist cannot tell a production cluster from a staging one). A
malformed kubeconfig becomes one located `KubeconfigError` line (exit 2) instead of a client
traceback.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from drillkit.errors import InputError, UnavailableError

if TYPE_CHECKING:
    from drillkit.kube.client import Kube
    from drillkit.scenario import Scenario
    from drillkit.signals import StopFlag

log = logging.getLogger("drillkit.kube")

IN_CLUSTER = "in-cluster"
"""Context name used for in-cluster service-account config (must be allowed explicitly)."""


@dataclass(frozen=True)
class KubeSettings:
    """Which cluster to talk to: kubeconfig file(s) and context, or in-cluster config."""

    context: str
    kubeconfig: str | None = None  # None: $KUBECONFIG or ~/.kube/config
    kind_named: bool = False  # allowed only by its `kind-*` name: its server is checked (check_kind)

    @property
    def in_cluster(self) -> bool:
        return self.context == IN_CLUSTER


def context_allowed(name: str, allow: tuple[str, ...] | list[str]) -> bool:
    """`kind-*` contexts are disposable local clusters; anything else must be allowed by name."""
    return name.startswith("kind-") or name in allow


class KubeconfigError(InputError):
    """The kubeconfig file is not valid YAML, or not shaped like a kubeconfig (exit 2)."""


def _kubeconfig_name(kubeconfig: str | None) -> str:
    return kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"


def malformed_kubeconfig(kubeconfig: str | None, exc: BaseException) -> KubeconfigError | None:
    """A one-line KubeconfigError naming the file for what the client raises on a malformed
    kubeconfig (a YAML error, or a TypeError/KeyError/... from a wrongly shaped document);
    None for anything else."""
    import yaml

    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        name = (
            str(mark.name)
            if mark is not None and mark.name and not str(mark.name).startswith("<")
            else _kubeconfig_name(kubeconfig)
        )
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        what = " ".join(str(exc.problem or exc.context or "").split())
        return KubeconfigError(f"kubeconfig {name} is not valid YAML{where}: {what}")
    if isinstance(exc, yaml.YAMLError):
        detail = " ".join(str(exc).splitlines()[0].split())
        return KubeconfigError(f"kubeconfig {_kubeconfig_name(kubeconfig)} is not valid YAML: {detail}")
    if isinstance(exc, TypeError | KeyError | AttributeError | ValueError | IndexError):
        return KubeconfigError(
            f"kubeconfig {_kubeconfig_name(kubeconfig)} is malformed (not a "
            f"kubeconfig document): {type(exc).__name__}: {exc}"
        )
    return None


def client_configuration(settings: KubeSettings) -> Any:
    """The client's `Configuration` for `settings`, with urllib3's own retries off (one retry
    policy: drillkit.retry). UnavailableError if it cannot be loaded, KubeconfigError if the
    kubeconfig is malformed."""
    from kubernetes import client, config

    cfg = client.Configuration()
    try:
        if settings.in_cluster:
            config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
        else:
            config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=settings.kubeconfig,
                context=settings.context,
                client_configuration=cfg,
                persist_config=False,
            )
    except (config.ConfigException, OSError) as exc:
        raise UnavailableError(f"cannot load Kubernetes config for context {settings.context!r}: {exc}") from None
    except Exception as exc:
        bad = malformed_kubeconfig(settings.kubeconfig, exc)
        if bad is None:
            raise
        raise bad from None
    cfg.retries = False
    return cfg


def _kubeconfig_contexts(kubeconfig: str | None) -> tuple[list[str], str | None]:
    from kubernetes import config

    try:
        contexts, active = config.list_kube_config_contexts(config_file=kubeconfig)  # type: ignore[no-untyped-call]
    except config.ConfigException as exc:
        raise UnavailableError(f"cannot read kubeconfig {kubeconfig or '$KUBECONFIG'}: {exc}") from None
    except OSError as exc:
        raise UnavailableError(f"cannot read kubeconfig: {exc}") from None
    except Exception as exc:
        bad = malformed_kubeconfig(kubeconfig, exc)
        if bad is None:
            raise
        raise bad from None
    try:
        names = [c["name"] for c in contexts or []]
        return names, (active or {}).get("name")
    except (TypeError, KeyError, AttributeError) as exc:
        raise malformed_kubeconfig(kubeconfig, exc) or exc from None


def resolve_settings(
    context: str | None,
    scenario_context: str | None,
    allow_contexts: tuple[str, ...] | list[str],
    kubeconfig: str | None,
) -> KubeSettings:
    """Pick the context (`--context`, else the scenario's, else the kubeconfig's current one)
    and refuse it unless allowed. Raises InputError for a disallowed or unknown context."""
    wanted = context or scenario_context
    if wanted == IN_CLUSTER or (wanted is None and _in_cluster_available() and not _has_kubeconfig(kubeconfig)):
        if not context_allowed(IN_CLUSTER, allow_contexts):
            raise InputError(
                "refusing the in-cluster service account: pass "
                "`--allow-context in-cluster` to run drills from inside a cluster"
            )
        return KubeSettings(IN_CLUSTER, None)
    names, active = _kubeconfig_contexts(kubeconfig)
    name = wanted or active
    if not name:
        raise InputError("no kubeconfig context: pass --context NAME or set target.kubernetes.context in the scenario")
    if name not in names:
        raise InputError(f"kubeconfig context {name!r} not found; available: {', '.join(names) or 'none'}")
    if not context_allowed(name, allow_contexts):
        raise InputError(
            f"refusing kubeconfig context {name!r}: only kind-* contexts are allowed by default; "
            f"pass `--allow-context {name}` if you really mean to run this drill there"
        )
    if name not in allow_contexts:  # allowed by its kind-* name: check what the name promises
        host = urlsplit(client_configuration(KubeSettings(name, kubeconfig)).host).hostname or ""
        if not _loopback(host):
            raise InputError(
                f"refusing kubeconfig context {name!r}: its name says kind, but its API server "
                f"({host}) is not on loopback, where kind serves it; pass `--allow-context {name}` "
                "if you really mean to run this drill there"
            )
    if context and scenario_context and context != scenario_context:
        log.warning("using context %s (--context) instead of the scenario's %s", context, scenario_context)
    return KubeSettings(name, kubeconfig, kind_named=name.startswith("kind-") and name not in allow_contexts)


def check_kind(context: str, cfg: Any) -> None:
    """A context allowed only by its `kind-<cluster>` name must reach that kind cluster: kind
    serves its API over TLS, verified by the kubeconfig's CA, with a certificate naming the
    control-plane node (kubeadm puts `<cluster>-control-plane` in the apiserver's names;
    `<cluster>-external-load-balancer` with several control planes). A `kubectl proxy` (plain
    HTTP) or a tunnel to another cluster is on loopback too, but fails this. InputError if not;
    an unreachable server is left to the first request, which says so with its retries."""
    import socket
    import ssl

    cluster = context.removeprefix("kind-")
    refuse = f"refusing kubeconfig context {context!r}: its name says kind, but its API server ({cfg.host})"
    hint = f"pass `--allow-context {context}` if you really mean to run this drill there"
    parts = urlsplit(cfg.host)
    if parts.scheme != "https":
        raise InputError(f"{refuse} speaks plain HTTP, as a `kubectl proxy` does (kind serves TLS); {hint}")
    if not cfg.verify_ssl:
        raise InputError(f"{refuse} is not verified (insecure-skip-tls-verify; kind's kubeconfig has its CA); {hint}")
    tls = ssl.create_default_context(cafile=cfg.ssl_ca_cert or None)
    tls.check_hostname = False  # the names are checked below, against kind's
    try:
        address = (parts.hostname or "", parts.port or 443)
        with socket.create_connection(address, timeout=5) as raw, tls.wrap_socket(raw) as conn:
            cert = conn.getpeercert() or {}
    except ssl.SSLCertVerificationError as exc:
        raise InputError(
            f"{refuse} has a certificate the kubeconfig's CA did not sign ({exc.verify_message}); {hint}"
        ) from None
    except OSError:
        return
    alt_names: Any = cert.get("subjectAltName", ())  # (("DNS", "name"), ("IP Address", "…"), …)
    names = [str(pair[1]) for pair in alt_names if pair[0] == "DNS"]
    if not {f"{cluster}-control-plane", f"{cluster}-external-load-balancer"} & set(names):
        raise InputError(
            f"{refuse} has a certificate for {', '.join(names) or 'no host name'}, not for "
            f"{cluster}-control-plane as kind cluster {cluster!r}'s is (a tunnel to another cluster?); {hint}"
        )


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _in_cluster_available() -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and os.path.exists(
        "/var/run/secrets/kubernetes.io/serviceaccount/token"
    )


def _has_kubeconfig(kubeconfig: str | None) -> bool:
    if kubeconfig or os.environ.get("KUBECONFIG"):
        return True
    return os.path.exists(os.path.expanduser("~/.kube/config"))


def kube_factory_for(
    scenario: Scenario,
    context: str | None,
    allow_contexts: tuple[str, ...],
    kubeconfig: str | None,
    stop: StopFlag | None = None,
) -> Callable[[], Kube]:
    """Check the context now (before anything runs) and return a factory for the facade, whose
    retry back-offs and waits end early when `stop` (the drill's flag) interrupts."""
    from drillkit.kube.client import Kube

    target = scenario.target.kubernetes
    settings = resolve_settings(context, target.context if target else None, allow_contexts, kubeconfig)
    return lambda: Kube(settings, stop)
