"""The commands drillkit sends into containers, run for real on this machine.

Why: each command, alone and for every path the cluster cannot show. Here each shell script goes through
`sh -n`, each stress-ng argument vector through `stress-ng --dry-run`, the tc commands and the
netem scripts through the real `tc` in a network namespace of our own (the kernel's own answer
where it has no netem), and the memory allocator runs inside a memory-limited cgroup until the
kernel OOM-kills it, with the cgroup probe reading the real counter. A command the real tool
rejects fails a test here.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from drillkit.faults.kube.database import _MYSQL_SCRIPT, _PG_SCRIPT
from drillkit.faults.kube.memory import MEMORY_COMMAND, cgroup_probe, parse_probe, quantity_bytes
from drillkit.faults.kube.network import netem_script, revert_script
from drillkit.faults.kube.pressure import CPU_MARKER, MEMORY_MARKER, killer

V1_MEMORY = Path("/sys/fs/cgroup/memory")


def sh_n(script: str) -> None:
    res = subprocess.run(["sh", "-n", "-c", script], capture_output=True, text=True, check=False)
    assert res.returncode == 0, f"sh -n rejects {script!r}: {res.stderr}"


def stress_ng_accepts(args: list[str]) -> None:
    """`stress-ng --dry-run ARGS` exits 0 (it parses every option, sizes included)."""
    if shutil.which("stress-ng") is None:
        pytest.skip("stress-ng is not installed")
    res = subprocess.run(["stress-ng", "--dry-run", *args], capture_output=True, text=True, check=False)
    assert res.returncode == 0, f"stress-ng rejects {args}: {res.stdout}{res.stderr}"


@pytest.mark.parametrize(
    ("quantity", "expected"),
    [
        ("1G", 10**9),
        ("1Gi", 2**30),
        ("256Mi", 256 * 2**20),
        ("1.5Gi", 3 * 2**29),
        ("500M", 5 * 10**8),
        ("2048", 2048),
        ("0.5k", 500),
    ],
)
def test_kubernetes_quantity_to_bytes(quantity: str, expected: int) -> None:
    assert quantity_bytes(quantity) == expected


@pytest.mark.parametrize("bad", ["1Gb", "1 Gi", "Gi", "1e3", "-1Gi", "1gi"])
def test_bad_quantities_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="quantity"):
        quantity_bytes(bad)


def test_stress_ng_refuses_what_drillkit_used_to_send() -> None:
    """The old argv: stress-ng cannot parse a Kubernetes binary suffix."""
    if shutil.which("stress-ng") is None:
        pytest.skip("stress-ng is not installed")
    res = subprocess.run(
        ["stress-ng", "--dry-run", "--vm", "1", "--vm-bytes", "1Gi", "--timeout", "1s"],
        capture_output=True,
        check=False,
    )
    assert res.returncode != 0


def test_every_shell_script_parses() -> None:
    scripts = {
        "memory allocator": MEMORY_COMMAND,
        "cgroup probe": cgroup_probe(),
        "memory killer": killer(MEMORY_MARKER),
        "cpu killer": killer(CPU_MARKER),
        "postgres connections": _PG_SCRIPT,
        "mysql connections": _MYSQL_SCRIPT,
        "netem": netem_script("eth0", "200ms 20ms", 900, "drillkit-netem-abc"),
        "netem revert": revert_script("eth0", "drillkit-netem-abc"),
    }
    for name, script in scripts.items():
        try:
            sh_n(script)
        except AssertionError as exc:
            raise AssertionError(f"{name}: {exc}") from None


def test_killer_kills_the_marked_shell_and_its_children() -> None:
    marker = f"drillkit-test{secrets.token_hex(3)}-pressure"
    proc = subprocess.Popen(["sh", "-c", f": {marker}=1; sleep 300; echo done"])
    try:
        time.sleep(0.3)
        children = [p.name for p in Path("/proc").glob("[0-9]*") if _ppid(p) == proc.pid]
        assert children, "the marked shell has no child to kill"
        subprocess.run(["sh", "-c", killer(marker)], check=True, timeout=30)
        assert proc.wait(10) == -9
        time.sleep(0.2)
        alive = [c for c in children if Path(f"/proc/{c}").exists() and _state(c) != "Z"]
        assert not alive, f"children of the marked shell survived the killer: {alive}"
    finally:
        if proc.poll() is None:
            proc.kill()


def _ppid(p: Path) -> int | None:
    try:
        for line in (p / "status").read_text().splitlines():
            if line.startswith("PPid:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def _state(pid: str) -> str:
    try:
        return (Path("/proc") / pid / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "gone"


@pytest.fixture
def v1_memory_cgroup(tmp_path: Path):
    """A fresh cgroup v1 memory cgroup limited to 128 MiB (swap too), and a fake cgroupfs root
    whose `memory` is that cgroup (what the container sees at /sys/fs/cgroup)."""
    if not (V1_MEMORY / "memory.limit_in_bytes").exists() or not os.access(V1_MEMORY, os.W_OK):
        pytest.skip("no writable cgroup v1 memory hierarchy here")
    cg = V1_MEMORY / f"drillkit-test-{secrets.token_hex(4)}"
    cg.mkdir()
    try:
        limit = str(128 * 2**20)
        (cg / "memory.limit_in_bytes").write_text(limit)
        if (cg / "memory.memsw.limit_in_bytes").exists():
            (cg / "memory.memsw.limit_in_bytes").write_text(limit)
        root = tmp_path / "cgroupfs"
        root.mkdir()
        (root / "memory").symlink_to(cg)
        yield cg, root
    finally:
        for _ in range(50):
            try:
                cg.rmdir()
                break
            except OSError:
                time.sleep(0.1)


def test_allocator_is_oom_killed_in_a_v1_cgroup_and_the_probe_sees_it(v1_memory_cgroup) -> None:
    cg, root = v1_memory_cgroup
    probe = cgroup_probe(str(root))
    before = parse_probe(subprocess.run(["sh", "-c", probe], capture_output=True, text=True, check=True).stdout)
    assert before is not None and before.version == 1 and before.oom_kills == 0, before
    procs = str(cg / "cgroup.procs")
    started = time.monotonic()
    res = subprocess.run(
        ["sh", "-c", f"echo $$ > \"{procs}\" && exec sh -c '{MEMORY_COMMAND}'"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    took = time.monotonic() - started
    assert "drillkit: allocator exited 137" in res.stdout, (res.returncode, res.stdout, res.stderr)
    assert "not found" not in res.stderr, f"the marker ran as a command: {res.stderr!r}"
    assert took < 20, f"128 MiB took {took:.1f}s to exhaust: the allocator is not linear"
    after = parse_probe(subprocess.run(["sh", "-c", probe], capture_output=True, text=True, check=True).stdout)
    assert after is not None and after.oom_kills == 1, f"cgroup oom_kill counter after the allocator: {after}"


NETEM_DRIVER = """ip link set lo up
sh -c "$NETEM" & s=$!
i=0
while [ $i -lt 50 ] && kill -0 $s 2>/dev/null && ! tc qdisc show dev lo | grep -q netem; do sleep 0.1; i=$((i+1)); done
echo "held: $(tc qdisc show dev lo)"
sh -c "$REVERT"; echo "revert: $?"
wait $s; echo "script: $?"
echo "after: $(tc qdisc show dev lo)"
"""
"""Runs the netem script and then the revert script in one private network namespace (the
scripts come through the environment, so only the netem script's own shell carries the marker
the revert's killer looks for)."""


def test_netem_revert_ends_the_containers_script_now() -> None:
    """The real scripts with the real `tc` on `lo` of a private network namespace. With netem in
    the kernel: the script holds the delay until the revert deletes it and ends the script (the
    old revert only deleted the qdisc: the script slept on with NET_ADMIN and later ran `tc qdisc
    del dev eth0 root` on whatever root qdisc was there by then). Without netem (this machine):
    the kernel refuses the qdisc, the script ends at once with exit 1 and the kernel's answer,
    and the revert's handle-qualified delete finds nothing of drillkit's ("Invalid handle")."""
    from tests.kubecluster.ephemeral import netem_available

    marker = f"drillkit-netem-{secrets.token_hex(3)}"
    env = {**os.environ, "NETEM": netem_script("lo", "200ms 20ms", 900, marker), "REVERT": revert_script("lo", marker)}
    res = _netns_tc(NETEM_DRIVER, env=env)
    lines = dict(line.split(": ", 1) for line in res.stdout.splitlines() if ": " in line)
    assert res.returncode == 0 and {"held", "revert", "script", "after"} <= set(lines), (res.stdout, res.stderr)
    if netem_available():
        assert "netem d1c: root" in lines["held"] and "delay 200ms  20ms" in lines["held"], lines
        assert lines["revert"] == "0" and lines["script"] == "0", f"the script did not end cleanly: {lines}"
    else:
        assert lines["script"] == "1" and "Specified qdisc kind is unknown" in res.stderr, (lines, res.stderr)
        assert lines["revert"] != "0" and "Invalid handle" in res.stderr, (lines, res.stderr)
    assert "d1c:" not in lines["after"], f"drillkit's qdisc outlived the revert: {lines['after']}"


def _netns_tc(script: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    if shutil.which("unshare") is None or shutil.which("tc") is None or os.geteuid() != 0:
        pytest.skip("needs root, unshare and tc")
    res = subprocess.run(
        ["unshare", "-n", "sh", "-c", f"ip link set lo up && {script}"],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        timeout=60,
    )
    if "Operation not permitted" in res.stderr and "unshare" in res.stderr:
        pytest.skip("cannot create a network namespace here")
    return res


def test_tc_parses_the_netem_commands() -> None:
    """Real `tc` in a private network namespace on `lo`. Without the netem kernel module the
    kernel answers "Specified qdisc kind is unknown" — after tc parsed every argument; an
    argument tc cannot parse fails earlier with another message."""
    add = _netns_tc("tc qdisc add dev lo root handle d1c: netem delay 200ms 20ms")
    assert add.returncode == 0 or "Specified qdisc kind is unknown" in add.stderr, add.stderr
    bad = _netns_tc("tc qdisc add dev lo root handle d1c: netem delay 200xs")
    assert bad.returncode != 0 and "Specified qdisc kind is unknown" not in bad.stderr, bad.stderr
    delete = _netns_tc("tc qdisc del dev lo root handle d1c:")
    assert delete.returncode != 0 and "Invalid handle" in delete.stderr, (
        f"the kernel must refuse to delete a root qdisc that is not drillkit's: {delete.stderr}"
    )
