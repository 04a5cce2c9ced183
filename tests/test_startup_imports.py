"""What `drillkit --help`, `drillkit validate` and `drillkit schema` import (structure, not time:
speed is measured in benchmarks/, never here): the command modules load lazily, no heavy library
a run needs loads to print help, the schema or to validate a local or a Kubernetes scenario, and
validating one Kubernetes fault loads that fault's module alone. And the lazy `--help`
still lists every command with the short help click would derive from its docstring."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import click
import pytest

from drillkit.cli import common, main

ROOT = Path(__file__).resolve().parent.parent
LAB = str(ROOT / "scenarios" / "lab" / "outage.yaml")
LAB_DB = str(ROOT / "scenarios" / "lab" / "database-exhaustion.yaml")  # its dsn is checked without psycopg
K8S = str(ROOT / "scenarios" / "k8s" / "pod-kill.yaml")

# Libraries a drill run needs, and drillkit's modules for a run: none is needed to print help
# or to validate a scenario.
HEAVY = {
    "kubernetes",
    "requests",
    "urllib3",
    "http.client",
    "jinja2",
    "psutil",
    "tenacity",
    "prometheus_api_client",
    "prometheus_client",
    "psycopg",
    "jwt",
    "matplotlib",
    "numpy",
    "importlib.metadata",
    "drillkit.engine",
    "drillkit.report",
    "drillkit.prometheus",
    "drillkit.journal",
}
# The standard library's slower imports, kept off these paths too.
STDLIB = {"logging", "subprocess", "difflib", "inspect", "uuid", "json", "hashlib"}


def _modules(args: list[str]) -> set[str]:
    code = (
        "import sys\n"
        "from drillkit.cli import main\n"
        "try:\n"
        f"    main({args!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(' '.join(sorted(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(out.splitlines()[-1].split())


@pytest.mark.parametrize(
    ("args", "stdlib"),
    [
        (["--help"], STDLIB - {"inspect", "uuid"}),  # click itself imports inspect and uuid
        (["validate", LAB], STDLIB - {"inspect", "uuid"}),
        # its ${lab.port.postgres} reads the lab's state.json (drillkit.lab.layout)
        (["validate", LAB_DB], STDLIB - {"inspect", "uuid", "json"}),
        # drillkit.kube.errors reads the apiserver's Status bodies with json
        (["validate", K8S], STDLIB - {"inspect", "uuid", "json"}),
        (["schema"], STDLIB - {"inspect", "uuid", "json"}),
    ],
    ids=["help", "validate-local", "validate-local-database", "validate-kubernetes", "schema"],
)
def test_startup_imports_nothing_heavy(args: list[str], stdlib: set[str]) -> None:
    loaded = _modules(args)
    unwanted = (HEAVY | stdlib) & loaded
    assert not unwanted, f"drillkit {' '.join(args)} imported {sorted(unwanted)}"


def test_help_imports_no_command_module() -> None:
    loaded = _modules(["--help"])
    assert not {"drillkit.cli.drills", "drillkit.cli.responders", "drillkit.cli.labcmd", "yaml"} & loaded, sorted(
        m for m in loaded if m.startswith("drillkit")
    )


def test_validate_imports_only_its_command_module() -> None:
    loaded = _modules(["validate", LAB])
    assert "drillkit.cli.drills" in loaded
    assert not {"drillkit.cli.responders", "drillkit.cli.labcmd"} & loaded


def test_command_table_matches_the_commands() -> None:
    """`common.COMMANDS` names each command's module and gives the short help click derives from
    its docstring, at every width."""
    where = {}
    for module in {m for m, _ in common.COMMANDS.values()}:
        mod = importlib.import_module(f"drillkit.cli.{module}")
        where.update({v.name: module for v in vars(mod).values() if isinstance(v, click.Command) and v.name})
    commands = dict(main.commands)
    assert sorted(commands) == sorted(common.COMMANDS), "add the command to (or drop it from) common.COMMANDS"
    for name, cmd in commands.items():
        module, short = common.COMMANDS[name]
        assert where.get(name) == module, f"{name}: defined in drillkit.cli.{where.get(name)}, not {module}"
        stand_in = click.Command(name, help=short)
        for limit in range(10, 200):
            assert stand_in.get_short_help_str(limit) == cmd.get_short_help_str(limit), f"{name} at width {limit}"


def _help(columns: str, preload: bool) -> str:
    code = (
        ("import drillkit.cli.drills, drillkit.cli.responders, drillkit.cli.labcmd\n" if preload else "")
        + "from drillkit.cli import main\n"
        + "main(['--help'], prog_name='drillkit')\n"
    )
    env = {"COLUMNS": columns, "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout


@pytest.mark.parametrize("columns", ["60", "80", "200"])
def test_lazy_help_is_click_help(columns: str) -> None:
    """`drillkit --help` with no command module imported prints what click prints with every
    command loaded."""
    lazy = _help(columns, preload=False)
    assert lazy == _help(columns, preload=True)
    assert all(f"  {name} " in lazy for name in common.COMMANDS)


def test_unknown_command_suggests_every_command() -> None:
    out = subprocess.run([sys.executable, "-m", "drillkit.cli", "valdate", "x"], capture_output=True, text=True)
    assert out.returncode == 2
    assert "No such command 'valdate'" in out.stderr
    assert "'validate'" in out.stderr, out.stderr


# What validating a Kubernetes scenario needs of drillkit.kube is its views (Pod, labels) and
# error classes: not the client, the retry policy, the kubeconfig reader, nor the other faults.
KUBE_RUN = {
    "drillkit.kube.client",
    "drillkit.kube.api",
    "drillkit.kube.config",
    "drillkit.kube.lease",
    "drillkit.retry",
}


def test_validating_one_kubernetes_fault_loads_that_fault_only() -> None:
    loaded = _modules(["validate", K8S])
    faults = {m for m in loaded if m.startswith("drillkit.faults.kube.")}
    assert faults == {"drillkit.faults.kube.base", "drillkit.faults.kube.pods"}, sorted(faults)
    assert not KUBE_RUN & loaded, sorted(KUBE_RUN & loaded)
    assert not {"socket", "random", "secrets", "hashlib", "concurrent.futures"} & loaded


def test_validating_every_shipped_scenario_loads_no_client() -> None:
    loaded = _modules(["validate", str(ROOT / "scenarios")])
    unwanted = (HEAVY | KUBE_RUN | {"hashlib", "secrets", "concurrent.futures", "importlib.metadata"}) & loaded
    assert not unwanted, f"drillkit validate scenarios/ imported {sorted(unwanted)}"


def test_plugins_are_still_found_without_importlib_metadata_up_front(tmp_path: Path) -> None:
    """The cheap look for `drillkit.faults` entry points must not hide a real plugin."""
    (tmp_path / "plugin_x.py").write_text(
        "from drillkit.faults.local.processes import ProcessKill\n\n\n"
        "class OtherKill(ProcessKill):\n    kind = 'other-kill'\n"
    )
    dist = tmp_path / "plugin_x-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: plugin-x\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[drillkit.faults]\nother-kill = plugin_x:OtherKill\n")
    code = "from drillkit.faults import registry\nprint(sorted(registry('local')))"
    env = {"PYTHONPATH": f"{tmp_path}:{ROOT}", "PATH": "/usr/bin:/bin"}
    with_plugin = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert "other-kill" in with_plugin.stdout, with_plugin.stdout + with_plugin.stderr
    (dist / "entry_points.txt").unlink()
    without = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert "other-kill" not in without.stdout and "process-kill" in without.stdout, without.stdout
