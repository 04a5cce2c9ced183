"""auth-secret-corruption: replace a credential in a Secret and restart the workloads using it.

Why it exists apart: it is the one fault holding a secret value. The original stays inside the
cluster, in a run-labelled backup Secret — never on disk, never in the journal, whose record
names only the Secret, the key and the backup — and `restore_from_backup` puts it back, from
the revert or from `drillkit cleanup` finding the backup by label.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from drillkit.errors import DrillkitError, PreflightError
from drillkit.faults import Made, Naming, RevertContext, Undo
from drillkit.faults.kube.base import KubeFault, now, parse_workload
from drillkit.kube import BACKUP_OF, RESTART, RESTARTED_AT, RUN_LABEL, Conflict, NotFound, ObjRef, Workload
from drillkit.model import doc

if TYPE_CHECKING:
    from drillkit.kube import Kube

BACKUP_KEY = "drillkit.io/backup-key"
"""Annotation on a backup Secret: the key (of the Secret it backs up) it holds."""
BACKUP_SET = "drillkit.io/corrupted-value"
"""Annotation on a backup Secret: the (random, base64) value drillkit set, so a restore can tell
it from a rotation on-call made since (a blind backup keeps it in its `restore` JSON)."""
BLIND_VALUE, BLIND_META = "value", "restore"
"""A blind exercise's backup Secret has no annotations (`kubectl describe` shows them): it holds
the value under `value` and, under `restore`, JSON naming the Secret, key and workloads."""
MANAGED = {"app.kubernetes.io/managed-by": "drillkit"}
KUBECTL_RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
"""What `kubectl rollout restart` writes: a blind exercise's restarts look like an operator's."""


@dataclass(frozen=True)
class AuthSecretParams:
    secret: str = doc("Secret holding the credential, e.g. chatbot-jwt")
    key: str = doc("key in the Secret to corrupt, e.g. jwt-secret")
    restart: tuple[str, ...] = doc(
        "workloads to restart (deployment/NAME); default: every Deployment/StatefulSet using it", default=()
    )
    namespace: str | None = doc("namespace (default: the scenario's target namespace)", default=None)

    def __post_init__(self) -> None:
        for w in self.restart:
            parse_workload(w)


@dataclass(frozen=True)
class Credential:
    """What preflight found: the Secret, its users to restart and the backup's name."""

    namespace: str
    secret: ObjRef
    users: tuple[Workload, ...]
    backup: str


@dataclass(frozen=True)
class BackupRecord:
    """How to undo an auth-secret-corruption: where the original value waits (not the value)."""

    namespace: str
    secret: str
    key: str
    backup: str
    restart: str | None = None  # workloads restarted, `deployment/NAME,...`


def backup_name(secret: str, run_id: str, naming: Naming | None = None) -> str:
    return (naming or Naming()).name(Made.BACKUP, run_id, params=(secret,))[:253]


@dataclass(frozen=True)
class Backup:
    """What a backup Secret says: the Secret and key it backs up, its value, who to restart."""

    secret: str
    key: str
    value: str  # base64, as the API holds it
    restart: str
    corrupted: str = ""  # base64: what drillkit set ("": a backup of an older drillkit)

    @classmethod
    def of(cls, ann: dict[str, str], data: dict[str, str]) -> Backup | None:
        """Read from the annotations, or from a blind exercise's data; None if incomplete."""
        fields: tuple[object, ...]
        if BLIND_META in data:
            try:
                meta = json.loads(base64.b64decode(data[BLIND_META]))
                fields = (meta["secret"], meta["key"], data[BLIND_VALUE], meta["restart"], meta.get("set", ""))
            except (ValueError, KeyError, TypeError):
                return None
        else:
            named = ann.get(BACKUP_KEY) or ""
            fields = (ann.get(BACKUP_OF), named, data.get(named), ann.get(RESTART) or "", ann.get(BACKUP_SET, ""))
        if not all(isinstance(f, str) for f in fields) or not all(fields[:3]):
            return None
        return cls(*(str(f) for f in fields))

    def fields(self, blind: bool) -> tuple[dict[str, str], dict[str, str]]:
        """(data, annotations) of the backup Secret."""
        if not blind:
            ann = {BACKUP_OF: self.secret, BACKUP_KEY: self.key, RESTART: self.restart, BACKUP_SET: self.corrupted}
            return {self.key: self.value}, ann
        meta = json.dumps({"secret": self.secret, "key": self.key, "restart": self.restart, "set": self.corrupted})
        return {BLIND_VALUE: self.value, BLIND_META: base64.b64encode(meta.encode()).decode()}, {}


def restore_from_backup(kube: Kube, ns: str, backup: str, at: str) -> dict[str, Any]:
    """Put the backed-up key back into its Secret, restart its users, delete the backup.

    The order makes it safe to repeat after a crash at any point. Used by the revert and by
    `drillkit cleanup` (which finds backups by label without a journal).
    """
    ann = kube.secret_annotations(ns, backup)
    if ann is None:
        return {"restored": False, "reason": f"backup {ns}/{backup} not found (already restored)"}
    found = Backup.of(ann, kube.secret_data(ns, backup) or {})
    if found is None:
        raise DrillkitError(
            f"backup Secret {ns}/{backup} lacks its {BACKUP_OF}/{BACKUP_KEY} annotations or data; restore by hand"
        )
    secret, key = found.secret, found.key
    if found.corrupted and not kube.set_secret_key_if(ns, secret, key, (found.corrupted, found.value), found.value):
        kube.delete_secret(ns, backup)  # on-call rotated the key since: theirs wins
        return {
            "restored": False,
            "changed during the drill": f"key {key} of Secret {ns}/{secret} is no longer the value drillkit set "
            "(rotated since?); left as it is, its users not restarted",
        }
    if not found.corrupted:  # an older drillkit's backup: what it set is unknown
        kube.set_secret_key(ns, secret, key, found.value)
    restarted = []
    for w in filter(None, found.restart.split(",")):
        kind, name = parse_workload(w)
        try:
            kube.restart_workload(kind, ns, name, at)
            restarted.append(w)
        except NotFound:
            pass
    kube.delete_secret(ns, backup)
    return {"restored": True, "secret": secret, "key": key, "restarted": restarted}


class AuthSecretCorruption(KubeFault[AuthSecretParams, Credential, BackupRecord]):
    """Replace a credential in a Secret and restart its users; the original waits in a backup
    Secret inside the cluster (never on disk, never in the journal)."""

    kind = "auth-secret-corruption"
    Params = AuthSecretParams
    Record: ClassVar[type] = BackupRecord
    params: AuthSecretParams

    def preflight(self) -> Credential:
        p, ns = self.params, self.namespace
        self.guard_namespace(ns)
        secret = self.kube.secret_keys(ns, p.secret)
        if secret is None:
            raise PreflightError(f"{self.kind}: Secret {ns}/{p.secret} not found")
        ref, keys, immutable = secret
        if immutable:
            raise PreflightError(
                f"{self.kind}: Secret {ns}/{p.secret} is immutable (immutable: true): the API "
                "refuses to change it, so neither the corruption nor its revert could be applied; "
                "drill a mutable Secret, or recreate this one without `immutable`"
            )
        if p.key not in keys:
            raise PreflightError(f"{self.kind}: Secret {ns}/{p.secret} has no key {p.key!r} (keys: {', '.join(keys)})")
        if p.restart:
            users = []
            for kind, name in map(parse_workload, p.restart):
                w = self.kube.get_workload(kind, ns, name)
                if w is None:
                    raise PreflightError(f"{self.kind}: {kind} {ns}/{name} not found")
                users.append(w)
        else:
            users = [
                w
                for kind in ("Deployment", "StatefulSet")
                for w in self.kube.list_workloads(kind, ns)
                if w.mounts_secret(p.secret)
            ]
        return Credential(ns, ref, tuple(users), backup_name(p.secret, self.ctx.run_id, self.ctx.naming))

    def plan(self, found: Credential) -> list[str]:
        p, ns = self.params, found.namespace
        lines = [
            f"copy key {p.key} of {found.secret} into backup Secret {ns}/{found.backup} "
            f"(labelled {RUN_LABEL}={self.ctx.run_id})",
            f"replace key {p.key} of Secret {ns}/{p.secret} with a random value",
        ]
        lines += [f"restart {w.ref}" for w in found.users] or ["restart: no workload uses this Secret"]
        lines.append("revert: restore the key from the backup, restart again, delete the backup")
        return lines

    def inject(self, found: Credential, undo: Undo) -> None:
        p, ns, kube, backup = self.params, found.namespace, self.kube, found.backup
        restart = ",".join(f"{w.kind.lower()}/{w.name}" for w in found.users)
        undo.register(self, BackupRecord(ns, p.secret, p.key, backup, restart or None))
        original = (kube.secret_data(ns, p.secret) or {}).get(p.key)
        if original is None:
            raise PreflightError(f"{self.kind}: key {p.key} vanished from Secret {ns}/{p.secret}")
        blind = self.ctx.naming.blind
        import secrets  # the standard library's (absolute import); here: validating never needs hashlib

        corrupt = secrets.token_hex(24) if blind else f"drillkit-corrupted-{secrets.token_hex(16)}"
        corrupted = base64.b64encode(corrupt.encode()).decode()
        data, annotations = Backup(p.secret, p.key, original, restart, corrupted).fields(blind)
        labels = {RUN_LABEL: self.ctx.run_id} if blind else {RUN_LABEL: self.ctx.run_id, **MANAGED}
        try:
            kube.create_secret(ns, backup, data, labels=labels, annotations=annotations)
        except Conflict:  # a retried create that had succeeded: only fine if it is ours
            theirs = Backup.of(kube.secret_annotations(ns, backup) or {}, kube.secret_data(ns, backup) or {})
            if theirs is None or theirs.value != original:
                raise
        kube.set_secret_key(ns, p.secret, p.key, corrupted)
        at, key = now(), KUBECTL_RESTARTED_AT if blind else RESTARTED_AT
        for w in found.users:
            kube.restart_workload(w.kind, ns, w.name, at, key)
        self.ctx.harm_started()  # the restart that picks up the bad secret has begun
        self.ctx.log(f"auth-secret-corruption: {ns}/{p.secret}[{p.key}] replaced; restarted {restart or 'nothing'}")

    @classmethod
    def revert(cls, ctx: RevertContext, record: BackupRecord) -> dict[str, Any]:
        return restore_from_backup(ctx.kube, record.namespace, record.backup, now())
