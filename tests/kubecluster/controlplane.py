"""The real Kubernetes control plane for the wire tests: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and KWOK, built from source by scripts/build-k8s.sh, started as processes on free
ports in a temp dir.

Why not kwokctl: starting the processes directly keeps every flag visible here (RBAC, the default
admission plugins with Pod Security, an audit log), needs no download, and stops exactly the
processes this module started (by their Popen handles, never by a pattern).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "kwok")
ADMIN_TOKEN = "drillkit-test-admin"
# Components authenticate as users of their own, so the audit log (and the request recorder) can
# leave their traffic out.
COMPONENT_TOKENS = {"kcm": "kube-controller-manager", "scheduler": "kube-scheduler", "kwok": "kwok-controller"}
NODE_ANNOTATION = "kwok.x-k8s.io/node"  # KWOK plays the kubelet of the nodes that carry it


def k8s_bin_dir() -> Path:
    """The cached binaries (building them the first time: several minutes, see docs/performance.md)."""
    env = os.environ.get("DRILLKIT_K8S_BIN")
    if env:
        return Path(env)
    out = subprocess.run(
        ["bash", str(REPO / "scripts" / "build-k8s.sh")], check=True, capture_output=True, text=True
    ).stdout
    return Path(out.strip().splitlines()[-1])


def _die_with_parent() -> None:
    """In the child: SIGTERM when the test process dies, even by SIGKILL (no orphaned apiserver)."""
    import ctypes

    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_pki(d: Path, host_ip: str) -> None:
    """A CA, a serving certificate for 127.0.0.1 and `host_ip` signed by it, and the ServiceAccount key pair."""
    d.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
             "-days", "2", "-subj", "/CN=drillkit-test-ca", cwd=d)  # fmt: skip
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
             "-subj", "/CN=kube-apiserver", cwd=d)  # fmt: skip
    (d / "ext.cnf").write_text(f"subjectAltName=IP:127.0.0.1,IP:{host_ip},DNS:localhost,DNS:kubernetes.default.svc\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "server.crt", "-days", "2", "-extfile", "ext.cnf", cwd=d)  # fmt: skip
    _openssl("genrsa", "-out", "sa.key", "2048", cwd=d)
    _openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=d)
    # the recording proxy's certificate, shaped like a kind cluster's: kubeadm puts the control
    # plane's node name (`<cluster>-control-plane`) in the apiserver's names, and the test
    # kubeconfig's `kind-drillkit-test` context names the cluster `drillkit-test`
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "proxy.key", "-out", "proxy.csr",
             "-subj", "/CN=kube-apiserver", cwd=d)  # fmt: skip
    (d / "proxy.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:drillkit-test-control-plane\n")
    _openssl("x509", "-req", "-in", "proxy.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "proxy.crt", "-days", "2", "-extfile", "proxy.cnf", cwd=d)  # fmt: skip


AUDIT_POLICY = """apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: None
    users: [kube-controller-manager, kube-scheduler, kwok-controller, "system:apiserver"]
  - level: None
    userGroups: ["system:nodes", "system:serviceaccounts:kube-system"]
  - level: Metadata
"""


_PLANES = [0, ""]  # control planes started by this process, and the tag of the latest


def _plane_tag() -> str:
    """The pid, and a count past the first control plane of this process (a test may start its own)."""
    _PLANES[0] += 1
    _PLANES[1] = str(os.getpid()) + (f"x{_PLANES[0]}" if _PLANES[0] > 1 else "")
    return _PLANES[1]


@dataclass(frozen=True)
class NodeNetwork:
    """The KWOK nodes' network namespace: a veth pair, `eth0` inside (the pods' interface, where
    `tc` lands), the host side carrying the apiserver's address for KWOK. Named by this process's
    pid, deleted by `delete()` (which removes the veth pair with it)."""

    name: str
    host_ip: str
    node_ip: str

    @classmethod
    def create(cls) -> NodeNetwork:
        tag = _plane_tag()
        n = (os.getpid() + _PLANES[0]) % 250 + 1
        self = cls(f"drillkit-test-{tag}", f"10.213.{n}.1", f"10.213.{n}.2")
        host_if = f"dkt{tag}"[:15]
        for cmd in (
            ["ip", "netns", "add", self.name],
            ["ip", "link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", self.name],
            ["ip", "addr", "add", f"{self.host_ip}/30", "dev", host_if],
            ["ip", "link", "set", host_if, "up"],
            ["ip", "-n", self.name, "addr", "add", f"{self.node_ip}/30", "dev", "eth0"],
            ["ip", "-n", self.name, "link", "set", "eth0", "up"],
            ["ip", "-n", self.name, "link", "set", "lo", "up"],
        ):
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                self.delete()
                raise RuntimeError(f"{' '.join(cmd)}: {done.stderr.strip()} (the wire tests need root and iproute2)")
        return self

    def delete(self) -> None:
        subprocess.run(["ip", "netns", "delete", self.name], capture_output=True)


NODE_MEMORY = 256 * 2**20
"""Bytes: the memory limit of the nodes' cgroup (KWOK itself uses ~65 MB of it; an allocator
exec'd into a pod reaches ~190 MB and is the OOM killer's victim)."""


@dataclass(frozen=True)
class NodeCgroup:
    """The memory cgroup KWOK and every command it execs into a pod run in: what a container's
    memory limit is on a real node. cgroup v1 (`/sys/fs/cgroup/memory/<name>`) or v2
    (`/sys/fs/cgroup/<name>`); KWOK sees it as its cgroupfs root (a cgroup namespace and its own
    mount of cgroupfs at /sys/fs/cgroup), as a container does, so drillkit's cgroup probe reads
    this cgroup's files. Named by this process's pid; `delete()` kills what is left in it (only
    processes this control plane's KWOK started) and removes it."""

    path: Path
    version: int

    @classmethod
    def create(cls, limit: int = NODE_MEMORY) -> NodeCgroup:
        name = f"drillkit-test-{_PLANES[1]}"
        if Path("/sys/fs/cgroup/cgroup.controllers").exists():
            root = Path("/sys/fs/cgroup")
            if "memory" not in (root / "cgroup.subtree_control").read_text().split():
                (root / "cgroup.subtree_control").write_text("+memory")
            self = cls(root / name, 2)
        else:
            self = cls(Path("/sys/fs/cgroup/memory") / name, 1)
        self.path.mkdir(exist_ok=True)
        if self.version == 1:
            (self.path / "memory.limit_in_bytes").write_text(str(limit))
            if (self.path / "memory.memsw.limit_in_bytes").exists():
                (self.path / "memory.memsw.limit_in_bytes").write_text(str(limit))
        else:
            (self.path / "memory.max").write_text(str(limit))
            if (self.path / "memory.swap.max").exists():
                (self.path / "memory.swap.max").write_text("0")
            (self.path / "memory.oom.group").write_text("0")  # the allocator dies, not KWOK with it
        return self

    @property
    def oom_kills(self) -> int:
        """The kernel's count of OOM kills in this cgroup."""
        text = (self.path / ("memory.oom_control" if self.version == 1 else "memory.events")).read_text()
        return int(next(ln.split()[1] for ln in text.splitlines() if ln.startswith("oom_kill ")))

    def join(self) -> None:
        """In a child before exec: move this process into the cgroup."""
        (self.path / "cgroup.procs").write_text(str(os.getpid()))

    @contextlib.contextmanager
    def never_oom_killing(self) -> Iterator[None]:
        """While inside: an allocator at the limit is never OOM-killed (v1: `oom_kill_disable`,
        it waits for memory; v2: `memory.high` under the limit, it is throttled). Afterwards the
        kernel's OOM killer acts again."""
        if self.version == 1:
            control = self.path / "memory.oom_control"
            control.write_text("1")
            try:
                yield
            finally:
                control.write_text("0")
        else:
            high = self.path / "memory.high"
            current = int((self.path / "memory.current").read_text())
            high.write_text(str(current + 32 * 2**20))
            try:
                yield
            finally:
                high.write_text("max")

    def mount_script(self) -> str:
        """Run in KWOK's own mount and cgroup namespaces: cgroupfs at /sys/fs/cgroup, rooted here."""
        if self.version == 2:
            return "mount -t cgroup2 cgroup2 /sys/fs/cgroup"
        return (
            "mount -t tmpfs -o mode=755 cgroup /sys/fs/cgroup && mkdir /sys/fs/cgroup/memory && "
            "mount -t cgroup -o memory cgroup /sys/fs/cgroup/memory"
        )

    @property
    def mountpoint(self) -> str:
        return "/sys/fs/cgroup" if self.version == 2 else "/sys/fs/cgroup/memory"

    def delete(self) -> None:
        if not self.path.exists():
            return
        for _ in range(50):
            pids = (self.path / "cgroup.procs").read_text().split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
            try:
                self.path.rmdir()
                return
            except OSError:
                time.sleep(0.1)


@dataclass
class ControlPlane:
    """Started processes and where they listen; `stop()` ends exactly them."""

    root: Path
    bin: Path
    api_port: int = 0
    etcd_port: int = 0
    kwok_port: int = 0
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    startup_seconds: float = 0.0
    node_net: NodeNetwork | None = None
    node_cgroup: NodeCgroup | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    @property
    def etcd_url(self) -> str:
        return f"http://127.0.0.1:{self.etcd_port}"

    @property
    def ca(self) -> Path:
        return self.root / "pki" / "ca.crt"

    @property
    def job_logs(self) -> Path:
        """Where the job runner writes the logs KWOK serves (see JOB_LOG_CONTAINERS)."""
        return self.root / "job-logs"

    @property
    def audit_log(self) -> Path:
        return self.root / "audit.log"

    def kubeconfig(self, name: str, token: str, server: str | None = None) -> Path:
        path = self.root / f"{name}.kubeconfig"
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": "test", "cluster": {"server": server or self.url, "certificate-authority": str(self.ca)}}
            ],
            "users": [{"name": name, "user": {"token": token}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": name}}],
            "current-context": "test",
        }
        path.write_text(json.dumps(config))
        return path

    def start(self) -> ControlPlane:
        t0 = time.monotonic()
        pki = self.root / "pki"
        self.node_net = NodeNetwork.create()
        self.node_cgroup = NodeCgroup.create()
        make_pki(pki, self.node_net.host_ip)
        tokens = [f"{ADMIN_TOKEN},admin,admin-uid,system:masters"]
        tokens += [f"{name}-token,{user},{user}-uid,system:masters" for name, user in COMPONENT_TOKENS.items()]
        (self.root / "tokens.csv").write_text("\n".join(tokens) + "\n")
        (self.root / "audit-policy.yaml").write_text(AUDIT_POLICY)
        self.etcd_port, peer = free_port(), free_port()
        self._spawn("etcd", [
            "--name=test", f"--data-dir={self.root / 'etcd'}",
            f"--listen-client-urls={self.etcd_url}", f"--advertise-client-urls={self.etcd_url}",
            f"--listen-peer-urls=http://127.0.0.1:{peer}", f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-cluster=test=http://127.0.0.1:{peer}", "--unsafe-no-fsync", "--log-level=warn",
        ])  # fmt: skip
        self._wait_http(f"{self.etcd_url}/health", "etcd")
        self.api_port = free_port()
        self._spawn("kube-apiserver", [
            f"--etcd-servers={self.etcd_url}", "--bind-address=0.0.0.0", f"--secure-port={self.api_port}",
            f"--advertise-address={self.node_net.host_ip}",
            f"--tls-cert-file={pki / 'server.crt'}", f"--tls-private-key-file={pki / 'server.key'}",
            f"--client-ca-file={pki / 'ca.crt'}", f"--token-auth-file={self.root / 'tokens.csv'}",
            f"--service-account-key-file={pki / 'sa.pub'}", f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            "--authorization-mode=Node,RBAC", "--service-cluster-ip-range=10.96.0.0/16",
            "--enable-admission-plugins=NodeRestriction",  # on top of the default set (PodSecurity included)
            f"--audit-policy-file={self.root / 'audit-policy.yaml'}", f"--audit-log-path={self.audit_log}",
            "--kubelet-preferred-address-types=InternalIP", "--allow-privileged=true",
            "--v=0",
        ])  # fmt: skip
        self._wait_http(f"{self.url}/readyz", "kube-apiserver", auth=True, timeout=90)
        kcm = self.kubeconfig("kcm", "kcm-token")
        self._spawn("kube-controller-manager", [
            f"--kubeconfig={kcm}", "--leader-elect=false", "--controllers=*",
            f"--service-account-private-key-file={pki / 'sa.key'}", f"--root-ca-file={pki / 'ca.crt'}",
            "--use-service-account-credentials=false", "--bind-address=127.0.0.1", f"--secure-port={free_port()}",
            "--kube-api-qps=500", "--kube-api-burst=1000", "--node-monitor-grace-period=40s", "--v=0",
        ])  # fmt: skip
        sched = self.kubeconfig("scheduler", "scheduler-token")
        self._spawn("kube-scheduler", [
            f"--kubeconfig={sched}", "--leader-elect=false", "--bind-address=127.0.0.1",
            f"--secure-port={free_port()}", "--v=0",
            "--kube-api-qps=500", "--kube-api-burst=1000",  # binds 1,000 pods in seconds (default 50/s)
        ])  # fmt: skip
        self.kwok_port = free_port()
        (self.root / "kwok.yaml").write_text(
            KWOK_CONFIG + CLUSTER_EXEC.format(workdir=self.root / "exec") + cluster_logs(self.job_logs)
        )
        (self.root / "exec").mkdir()
        self.job_logs.mkdir()
        for container in JOB_LOG_CONTAINERS:  # a container that has not written yet has an empty log
            (self.job_logs / f"{container}.log").touch()
        kwok_server = f"https://{self.node_net.host_ip}:{self.api_port}"
        node_ip = self.node_net.node_ip
        self._spawn("kwok", [
            f"--kubeconfig={self.kubeconfig('kwok', 'kwok-token', kwok_server)}", f"--config={self.root / 'kwok.yaml'}",
            "--manage-all-nodes=false", f"--manage-nodes-with-annotation-selector={NODE_ANNOTATION}=fake",
            f"--node-ip={node_ip}", f"--node-port={self.kwok_port}", f"--server-address={node_ip}:{self.kwok_port}",
            f"--tls-cert-file={pki / 'server.crt'}", f"--tls-private-key-file={pki / 'server.key'}",
            "--node-lease-duration-seconds=40",
        ])  # fmt: skip
        self.startup_seconds = time.monotonic() - t0
        return self

    def _spawn(self, name: str, args: list[str]) -> None:
        log = open(self.root / f"{name}.log", "wb")  # noqa: SIM115 - the child keeps it
        # KWOK (the nodes' kubelet) runs in the nodes' network namespace: what a test execs in a
        # pod (tc on eth0) runs there, never on this machine's own interfaces.
        # It runs in the nodes' memory cgroup too (see NodeCgroup), seeing it as its cgroupfs.
        prefix: list[str] = []
        preexec = _die_with_parent
        if name == "kwok":
            assert self.node_net is not None and self.node_cgroup is not None
            cgroup = self.node_cgroup
            prefix = ["ip", "netns", "exec", self.node_net.name, "unshare", "--cgroup",
                      "sh", "-c", f'{cgroup.mount_script()} && exec "$@"', "kwok"]  # fmt: skip

            def preexec() -> None:
                _die_with_parent()
                cgroup.join()

        self.procs[name] = subprocess.Popen(
            [*prefix, str(self.bin / name), *args], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, preexec_fn=preexec,
        )  # fmt: skip
        log.close()

    def _wait_http(self, url: str, name: str, auth: bool = False, timeout: float = 30) -> None:
        ctx = ssl.create_default_context(cafile=str(self.ca)) if url.startswith("https") else None
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"} if auth else {}
        deadline, last = time.monotonic() + timeout, ""
        while time.monotonic() < deadline:
            proc = self.procs[name]
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited {proc.returncode}: {self.log_tail(name)}")
            try:
                with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=2, context=ctx) as r:
                    if r.status == 200:
                        return
            except OSError as exc:
                last = str(exc)
            time.sleep(0.1)
        raise RuntimeError(f"{name} not ready after {timeout}s ({last}): {self.log_tail(name)}")

    def log_tail(self, name: str, lines: int = 20) -> str:
        path = self.root / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def check_running(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited {proc.returncode}: {self.log_tail(name)}")

    def stop(self) -> None:
        for proc in reversed(list(self.procs.values())):
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()
        if self.node_net is not None:
            self.node_net.delete()
        if self.node_cgroup is not None:
            self.node_cgroup.delete()

    @contextlib.contextmanager
    def memory_cgroup_hidden(self) -> Iterator[None]:
        """Unmount cgroupfs in KWOK's mount namespace (a node whose containers see no memory
        cgroup, as in some sandboxed runtimes) and mount it back afterwards."""
        assert self.node_cgroup is not None
        enter = ["nsenter", "-t", str(self.procs["kwok"].pid), "-m", "-C"]
        point = self.node_cgroup.mountpoint
        subprocess.run([*enter, "umount", point], check=True, capture_output=True)
        try:
            yield
        finally:
            kind = (
                ["-t", "cgroup2", "cgroup2"]
                if self.node_cgroup.version == 2
                else ["-t", "cgroup", "-o", "memory", "cgroup"]
            )
            subprocess.run([*enter, "mount", *kind, point], check=True, capture_output=True)

    def compact_etcd(self) -> int:
        """Compact etcd at its current revision (what etcd does every 5 minutes for the apiserver):
        a watch resumed from an older resourceVersion then gets 410 Gone."""
        rev = int(self._etcd("/v3/kv/range", {"key": "Lw=="})["header"]["revision"])
        self._etcd("/v3/kv/compaction", {"revision": str(rev), "physical": True})
        return rev

    def _etcd(self, path: str, body: dict[str, object]) -> dict[str, dict[str, str]]:
        req = urllib.request.Request(f"{self.etcd_url}{path}", data=json.dumps(body).encode(), method="POST")
        with urllib.request.urlopen(req, timeout=10) as r:
            return dict(json.load(r))


KWOK_CONFIG = (Path(__file__).parent / "kwok-stages.yaml").read_text()

# Every exec into a pod on a KWOK node runs the real command here (in KWOK's network namespace,
# in `workdir`): the scripts drillkit sends are run by the real sh, tc, etc. A container named
# `static` stands for a distroless image: its "root filesystem" does not exist, so no command
# can start in it (the runtime's start failure, not an exit code).
CLUSTER_EXEC = """
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: ClusterExec
metadata: {{name: run-locally}}
spec:
  execs:
    - containers: [static]
      local: {{workDir: {workdir}/no-root-filesystem}}
    - local: {{workDir: {workdir}}}
"""

JOB_LOG_CONTAINERS = ("connections", "batch")
"""Containers whose log KWOK serves from `ControlPlane.job_logs`/<name>.log (CRI format), written
by the job runner (jobrunner.py): drillkit's db-connection-exhaustion client, plain and blind."""
CLUSTER_LOGS = """
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: ClusterLogs
metadata: {{name: job-logs}}
spec:
  logs:
{entries}
"""


def cluster_logs(logs: Path) -> str:
    entries = "".join(f"    - {{containers: [{c}], logsFile: {logs / (c + '.log')}}}\n" for c in JOB_LOG_CONTAINERS)
    return CLUSTER_LOGS.format(entries=entries.rstrip("\n"))
