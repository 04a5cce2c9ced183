"""What the speed-ups must not change (speed itself is measured in benchmarks/, never here):
libyaml's loader gives the same lines, values and errors as the pure-Python one, validation
imports only what it needs, and the lazy fault index names every built-in fault."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from drillkit import model
from drillkit.errors import ScenarioError
from drillkit.faults import Fault, _kinds
from drillkit.scenario import load_scenario, variable

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = [*sorted((ROOT / "scenarios").rglob("*.yaml")), ROOT / "tests" / "data" / "exporter-kill.yaml"]
BAD = sorted(p for p in (ROOT / "tests" / "data" / "bad").glob("*.yaml"))


def _lines(value: Any) -> Any:
    """Values with every remembered line, to compare two loads exactly."""
    if isinstance(value, dict):
        return {
            "line": getattr(value, "line", None),
            "keys": dict(getattr(value, "key_lines", {})),
            "items": {k: _lines(v) for k, v in value.items()},
        }
    if isinstance(value, list):
        return {"line": getattr(value, "line", None), "items": [_lines(v) for v in value], "at": value.item_lines}
    return (type(value).__name__, value)


@pytest.fixture
def pure(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if libyaml were missing: the pure-Python loader only."""
    monkeypatch.setattr(model, "_FastLoader", model._Loader)


def test_libyaml_is_in_use() -> None:
    assert model._FastLoader is not model._Loader, "libyaml (yaml.CSafeLoader) missing: loading is 10x slower"


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_libyaml_and_pure_loads_are_identical(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fast = _lines(model.load_yaml(path, variable))
    monkeypatch.setattr(model, "_FastLoader", model._Loader)
    slow = _lines(model.load_yaml(path, variable))
    assert fast == slow, f"{path}: libyaml and the pure loader disagree"


def _error(path: Path) -> str:
    try:
        load_scenario(path)
    except ScenarioError as exc:
        return str(exc)
    return "loaded"


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.stem)
def test_bad_input_errors_are_word_for_word_without_libyaml(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with_libyaml = _error(path)
    monkeypatch.setattr(model, "_FastLoader", model._Loader)
    assert with_libyaml == _error(path)
    assert with_libyaml != "loaded"


def test_pure_loader_still_loads(pure: None) -> None:
    sc = load_scenario(ROOT / "scenarios" / "lab" / "outage.yaml")
    assert [f.kind for f in sc.faults] == ["process-kill", "process-kill"]


def test_validate_imports_only_what_it_needs() -> None:
    """`drillkit validate` of a local process-kill drill loads neither the other faults nor the
    libraries only a run needs (the import cost is most of its start-up)."""
    code = (
        "import sys\n"
        "from drillkit.cli import main\n"
        "try:\n"
        f"    main(['validate', {str(ROOT / 'scenarios' / 'lab' / 'outage.yaml')!r}])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(' '.join(sorted(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = set(out.splitlines()[-1].split())
    unwanted = {
        "psutil",
        "tenacity",
        "http.client",
        "urllib.request",
        "kubernetes",
        "requests",
        "psycopg",
        "jinja2",
        "matplotlib",
        "drillkit.faults.local.database",
        "drillkit.faults.local.memory",
        "drillkit.faults.local.cpu",
        "drillkit.faults.kube",
        "drillkit.engine",
    }
    assert not unwanted & loaded, f"validate imported {sorted(unwanted & loaded)}"


@pytest.mark.parametrize("target", ["local", "kubernetes"])
def test_fault_index_names_every_builtin_fault(target: str) -> None:
    """`KINDS` (kind -> module:Class, read without importing the faults) lists each concrete
    fault class of the target's package, under its own kind."""
    package = importlib.import_module({"local": "drillkit.faults.local", "kubernetes": "drillkit.faults.kube"}[target])
    found = {}
    for info in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
        module = importlib.import_module(info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, Fault) and not inspect.isabstract(cls) and cls.__module__ == module.__name__:
                found[cls.kind] = f"{cls.__module__}:{cls.__name__}"
    assert found == _kinds(target)


def test_latency_is_stamped_when_the_proxy_applied_the_delay(tmp_path: Path) -> None:
    """The real lab proxy reports when it applied the delay; `injected` is that instant, not the
    write of the control file plus a fixed pick-up wait."""
    import asyncio
    import json
    import socket
    import threading
    import time
    from contextlib import ExitStack
    from datetime import datetime

    from drillkit.faults import FaultContext, Undo
    from drillkit.faults.local.latency import revision
    from drillkit.journal import Journal
    from drillkit.lab.proxy import Options, Proxy, applied_path
    from drillkit.signals import StopFlag
    from tests.kube_drill import write_scenario

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    control = tmp_path / "latency.json"
    loop = asyncio.new_event_loop()
    stop_proxy = asyncio.Event()
    proxy = Proxy(Options(("127.0.0.1", port), ("127.0.0.1", 9), control))
    thread = threading.Thread(target=loop.run_until_complete, args=(proxy.serve(stop_proxy),), daemon=True)
    thread.start()
    fault = {"kind": "latency", "control": str(control), "delay": "300ms", "proxy_port": port}
    sc_data = {
        "name": "latency",
        "title": "Latency",
        "severity": "P2",
        "target": {"local": {}},
        "steady_state": [{"name": "up", "expr": "up", "expect": "== 1"}],
        "faults": [fault],
        "detection": {"alert": "X"},
    }
    sc = load_scenario(write_scenario(tmp_path / "latency.yaml", sc_data))
    journal = Journal(tmp_path / "journal.jsonl")
    stamped: list[datetime | None] = []
    ctx = FaultContext(
        run_id="cafe01", scenario=sc, journal=journal, stop=StopFlag(), log=lambda _: None, on_harm=stamped.append
    )
    try:
        for _ in range(100):  # listening
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.02)
        spec = sc.faults[0]
        from drillkit.faults import fault_class

        f = fault_class(spec.kind, "local")(spec.params, ctx)
        with ExitStack() as stack:
            t0 = time.time()
            f.inject(f.preflight(), Undo(stack, ctx))
            took = time.time() - t0
            report = json.loads(applied_path(control).read_text())
        (at,) = stamped
        assert at is not None, "stamped without the proxy's report"
        assert report["revision"] == revision("cafe01") and report["delay_ms"] == 300, report
        assert at.timestamp() == pytest.approx(report["at"], abs=1e-6), (at, report)
        assert t0 <= at.timestamp() <= t0 + took, "applied outside the inject"
    finally:
        loop.call_soon_threadsafe(stop_proxy.set)
        thread.join(5)
        loop.close()
        journal.close()
