"""Your own alert rules in the lab (`drillkit lab up --rules FILE_OR_DIR…`).

Why: teams drill the alerts they already run (kube-prometheus, the node-exporter mixin,
an exporter's mixin), not rules written for drillkit. Each file is a Prometheus rule file or
a Kubernetes `PrometheusRule` manifest (its `spec.groups` are the rules; several documents in
one file are merged). They are copied into the lab (`<dir>/prometheus/rules/`), checked with
`promtool check rules` before Prometheus sees them, and recorded in the lab's state, so every
Prometheus (re)start — `lab up` after a crash, or a revert that restarts it — loads them again.
A rule file is copied byte for byte, so promtool's line numbers are the file's own.
"""

from __future__ import annotations

import http.client
import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from drillkit.errors import InputError, UnavailableError
from drillkit.lab.services import binary
from drillkit.signals import wait_until

SUFFIXES = (".yml", ".yaml")


def rules_dir(lab_dir: str | Path) -> Path:
    return Path(lab_dir) / "prometheus" / "rules"


def collect(paths: list[str]) -> list[Path]:
    """The files named, plus every *.yml / *.yaml below the folders named (sorted; hidden ones
    below the folder named are left out, so a folder under ~/.cache is fine); an InputError for
    a path that does not exist or a folder without rule files."""
    out: list[Path] = []
    for raw in paths:
        p = Path(raw).absolute()
        if p.is_dir():
            found = sorted(
                q
                for q in p.rglob("*")
                if q.suffix in SUFFIXES and not any(s.startswith(".") for s in q.relative_to(p).parts)
            )
            if not found:
                raise InputError(f"{raw}: --rules: no *.yml or *.yaml rule files in this folder")
            out.extend(found)
        elif p.is_file():
            out.append(p)
        else:
            raise InputError(f"{raw}: --rules: no such file or directory")
    return list(dict.fromkeys(out))


def rule_text(path: Path) -> str:
    """The Prometheus rule file for `path`: the file itself, or the `spec.groups` of the
    PrometheusRule manifest(s) in it. An InputError naming the file otherwise."""
    text = path.read_text(encoding="utf-8")
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise InputError(f"{where}: --rules: not YAML ({getattr(exc, 'problem', exc)})") from None
    manifests = [d for d in docs if isinstance(d, dict) and d.get("kind") == "PrometheusRule"]
    if not manifests:
        if len(docs) == 1 and isinstance(docs[0], dict) and "groups" in docs[0]:
            return text
        raise InputError(
            f"{path}: --rules: expected a Prometheus rule file (top-level `groups:`) or a PrometheusRule manifest"
        )
    groups: list[Any] = []
    for m in manifests:
        spec = m.get("spec")
        if not isinstance(spec, dict) or not isinstance(spec.get("groups"), list):
            name = (m.get("metadata") or {}).get("name", "?")
            raise InputError(f"{path}: --rules: PrometheusRule {name} has no spec.groups list")
        groups.extend(spec["groups"])
    return f"# spec.groups of the PrometheusRule manifest(s) in {path}\n" + yaml.safe_dump(
        {"groups": groups}, sort_keys=False
    )


def check(path: Path, original: Path) -> None:
    """`promtool check rules`: an InputError with promtool's first complaint, naming the file
    the user gave (`original`)."""
    run = subprocess.run(
        [binary("promtool"), "check", "rules", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    if run.returncode == 0:
        return
    lines = [ln.strip() for ln in (run.stdout + run.stderr).splitlines() if ln.strip()]
    detail = next((ln for ln in lines if ln.startswith(str(path))), None) or next(
        (ln for ln in lines if not ln.startswith(("Checking", "FAILED"))), "rejected"
    )
    detail = detail.removeprefix(str(path)).lstrip(": ")
    raise InputError(f"{original}: --rules: promtool check rules: {detail}")


def install(paths: list[str], lab_dir: str | Path) -> list[str]:
    """Check every rule file of `paths` and copy it into the lab's rules folder (replacing
    what an earlier `--rules` put there). Returns the files as given, for the lab's state.
    Nothing is replaced unless every file passes."""
    files = collect(paths)
    dest = rules_dir(lab_dir)
    staging = dest.with_name("rules.new")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        for i, src in enumerate(files, start=1):
            copy = staging / f"{i:02d}-{src.stem}.yml"
            copy.write_text(rule_text(src), encoding="utf-8")
            check(copy, src)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(dest, ignore_errors=True)
    staging.rename(dest)
    return [str(f) for f in files]


def rule_globs(lab_dir: str | Path) -> list[Path]:
    """What Prometheus' `rule_files` gets for the user's rules (a glob matching nothing is fine)."""
    return [rules_dir(lab_dir) / "*.yml"]


def reload(prom: str, timeout: float) -> None:
    """`POST /-/reload` (the lab runs Prometheus with --web.enable-lifecycle), then wait until
    every rule group has been evaluated, so a drill right after finds the rules ready."""
    try:
        with urllib.request.urlopen(urllib.request.Request(f"{prom}/-/reload", method="POST"), timeout=30):
            pass
    except (OSError, http.client.HTTPException) as exc:
        raise UnavailableError(f"Prometheus at {prom} did not reload the rules: {exc}") from None

    def evaluated() -> bool:
        try:
            with urllib.request.urlopen(f"{prom}/api/v1/rules", timeout=5) as r:
                groups = json.loads(r.read())["data"]["groups"]
        except (OSError, ValueError, KeyError, http.client.HTTPException):
            return False
        return all(not g["lastEvaluation"].startswith("0001") for g in groups)

    if not wait_until(evaluated, time.monotonic() + timeout, 0.2):
        raise UnavailableError(f"Prometheus at {prom} had not evaluated the reloaded rules within {timeout:g}s")
