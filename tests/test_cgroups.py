"""cgroup discovery and moves on this host's real cgroupfs, for both versions it mounts.

This machine binds `memory` to a v1 hierarchy and offers other controllers (e.g. hugetlb) in the
unified v2 one, so the v2 rules (a parent needs the controller in `cgroup.subtree_control`; a
group holding processes cannot enable it for children) are exercised with such a controller.
What cannot run here — a v2 `memory.max` OOM kill — is covered by the counter parser below,
fed the kernel's own file format.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from drillkit.faults.local import cgroups as cg

pytestmark = pytest.mark.integration


def test_memory_hierarchy_and_own_cgroup_match_proc() -> None:
    h = cg.hierarchy("memory")
    if h is None:
        pytest.skip("no memory controller mounted")
    own = cg.cgroup_of(os.getpid(), h, "memory")
    assert own is not None and own.is_dir(), own
    assert os.getpid() in cg.procs(own), f"{own}/cgroup.procs lacks pid {os.getpid()}"
    assert (own / cg.limit_file(h.version)).exists() and (own / cg.usage_file(h.version)).exists()
    assert cg.oom_kills(own, h.version) is not None, "the kernel exposes an oom_kill counter"


def _v2_controller() -> str | None:
    """A controller this host offers in its v2 hierarchy (not bound to v1)."""
    for c in ("memory", "cpu", "pids", "io", "hugetlb"):
        h = cg.hierarchy(c)
        if h is not None and h.version == 2:
            return c
    return None


@contextlib.contextmanager
def enabled(directory: Path, controller: str) -> Iterator[None]:
    """`+controller` in directory's subtree_control for the block, put back as it was."""
    before = (directory / "cgroup.subtree_control").read_text().split()
    if controller not in before:
        try:
            (directory / "cgroup.subtree_control").write_text(f"+{controller}")
        except OSError as exc:  # e.g. a non-root group that holds processes (v2's rule)
            pytest.skip(f"cannot enable {controller} in {directory}: {exc}")
    try:
        yield
    finally:
        if controller not in before:
            (directory / "cgroup.subtree_control").write_text(f"-{controller}")


def test_v2_new_group_goes_to_the_nearest_parent_with_the_controller() -> None:
    controller = _v2_controller()
    if controller is None or os.geteuid() != 0:
        pytest.skip("needs root and a controller in a v2 hierarchy")
    h = cg.hierarchy(controller)
    assert h is not None
    sleeper = subprocess.Popen(["sleep", "120"])
    home = cg.cgroup_of(sleeper.pid, h, controller)
    assert home is not None
    top = home / f"drillkit-test-{secrets.token_hex(3)}"
    leaf = top / "leaf"
    try:
        top.mkdir()
        leaf.mkdir()
        cg.move(sleeper.pid, leaf)
        assert cg.cgroup_of(sleeper.pid, h, controller) == leaf
        if controller not in (home / "cgroup.subtree_control").read_text().split():
            where, why = cg.parent_for_new(sleeper.pid, h, controller)
            assert where is None and f"no +{controller} in subtree_control" in why, (where, why)
        with enabled(home, controller):
            assert cg.parent_for_new(sleeper.pid, h, controller) == (home, ""), "walks up past leaf and top"
            with enabled(top, controller):  # legal: top holds no process itself
                assert cg.parent_for_new(sleeper.pid, h, controller) == (top, "")
                group = top / "drillkit-run"
                group.mkdir()
                cg.move(sleeper.pid, group)
                assert cg.procs(group) == [sleeper.pid] and cg.procs(leaf) == []
                cg.move(sleeper.pid, leaf)
                assert cg.remove(group) and not group.exists()
            cg.move(sleeper.pid, home)
            cg.remove(leaf)
            cg.remove(top)
    finally:
        sleeper.kill()
        sleeper.wait()
        for d in (top / "drillkit-run", leaf, top):
            with contextlib.suppress(OSError):
                d.rmdir()
    assert not top.exists()


@pytest.mark.parametrize(
    ("version", "name", "content", "expected"),
    [
        (2, "memory.events", "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n", 1),
        (1, "memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n", 3),
        (1, "memory.oom_control", "oom_kill_disable 0\nunder_oom 0\n", None),  # kernels before 4.13
    ],
)
def test_oom_kill_counter_in_each_version_s_format(
    tmp_path: Path, version: int, name: str, content: str, expected: int | None
) -> None:
    (tmp_path / name).write_text(content)
    assert cg.oom_kills(tmp_path, version) == expected
    assert cg.oom_kills(tmp_path / "gone", version) is None
