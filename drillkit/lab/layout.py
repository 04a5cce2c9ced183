"""Where the local lab lives and which ports it takes: the part of `drillkit.lab.lab` that
scenario loading needs (`${lab.…}` variables), kept free of that module's heavier imports so
`drillkit validate` stays quick."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drillkit.errors import InputError

DEFAULT_DIR = Path(".drillkit/lab")
DEFAULT_BASE_PORT = 19090
STATE_FILE = "state.json"
MAX_REPLICAS = 20

# Offsets from the base port (the API replicas take base+10 ... base+10+N-1).
OFFSETS = {
    "prometheus": 0,
    "alertmanager": 1,
    "postgres": 2,
    "proxy": 3,
    "proxy_metrics": 4,
    "exporter": 5,
    "traffic_metrics": 6,
    "node": 7,
}
API_OFFSET = 10


@dataclass(frozen=True)
class Ports:
    prometheus: int
    alertmanager: int
    postgres: int
    proxy: int
    proxy_metrics: int
    exporter: int
    traffic_metrics: int
    api: tuple[int, ...]
    node: int = 0  # node_exporter (0 only while reading a state recorded before it existed)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Ports:
        """As recorded in state.json (KeyError/TypeError if it is not)."""
        node = raw.get("node", raw["prometheus"] + OFFSETS["node"])
        return cls(**{**raw, "api": tuple(raw["api"]), "node": node})

    @classmethod
    def layout(cls, base: int, replicas: int) -> Ports:
        if not 1 <= replicas <= MAX_REPLICAS:
            raise InputError(f"--replicas: expected 1..{MAX_REPLICAS}, got {replicas}")
        if not 1024 <= base <= 65535 - API_OFFSET - replicas:
            raise InputError(f"--base-port: expected 1024..{65535 - API_OFFSET - replicas}, got {base}")
        api = tuple(base + API_OFFSET + i for i in range(replicas))
        return cls(**{k: base + v for k, v in OFFSETS.items()}, api=api)

    def owned_by(self, component: str) -> list[int]:
        """The ports a component listens on."""
        return {
            "postgres": [self.postgres],
            "exporter": [self.exporter],
            "proxy": [self.proxy, self.proxy_metrics],
            "api": list(self.api),
            "traffic": [self.traffic_metrics],
            "node": [self.node],
            "alertmanager": [self.alertmanager],
            "prometheus": [self.prometheus],
        }[component]


def recorded_ports(lab_dir: str | Path) -> Ports | None:
    """The ports of the lab `lab up` recorded in `lab_dir`, or None (no lab, unreadable state)."""
    import json  # only when a lab was recorded: `drillkit validate` without one stays quick

    try:
        return Ports.from_dict(json.loads((Path(lab_dir) / STATE_FILE).read_text())["ports"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def lab_dir_default() -> Path:
    """The lab directory when none is given: `$DRILLKIT_LAB_DIR`, else `.drillkit/lab`."""
    return Path(os.environ.get("DRILLKIT_LAB_DIR") or DEFAULT_DIR)


def lab_variable(name: str) -> str:
    """A scenario's `${lab.…}` variable: `lab.dir`, `lab.port.<component>` (prometheus,
    alertmanager, postgres, proxy, proxy_metrics, exporter, traffic_metrics, node, api-1, api-2…).

    Values come from the lab in `lab_dir_default()` (not from the scenario's own
    `target.local.lab_dir`, which may itself be `${lab.dir}`) if it is up, else from the default
    layout, so `drillkit validate` needs no lab. ValueError for any other name."""
    lab_dir = lab_dir_default()
    if name == "lab.dir":  # absolute: revert records must hold wherever `drillkit cleanup` runs
        return str(lab_dir.absolute())
    component = name.removeprefix("lab.port.") if name.startswith("lab.port.") else ""
    ports = recorded_ports(lab_dir) or Ports.layout(DEFAULT_BASE_PORT, 2)
    if m := re.fullmatch(r"api-(\d+)", component):
        if 1 <= int(m.group(1)) <= len(ports.api):
            return str(ports.api[int(m.group(1)) - 1])
        raise ValueError(f"the lab in {lab_dir} has {len(ports.api)} API replica(s)")
    if component in OFFSETS:
        return str(getattr(ports, component))
    known = ", ".join([*OFFSETS, "api-1"])
    raise ValueError(f"no such lab variable: expected lab.dir or lab.port.<component> ({known}, …)")
