"""scale-to-zero and bad-rollout: faults that change a Deployment/StatefulSet in place.

Why they live together: both change an object drillkit did not create, so besides the journal
they keep their revert record in the cluster — a run-labelled Secret next to the workload
(`record_name`), and the label `drillkit.io/modified-by` on the workload — so that `drillkit
cleanup` can restore it even when the journal is lost (`restore_recorded`), and so that no
other run saves the broken state as the one to restore (`KubeFault.claimable`).
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from drillkit.errors import DrillkitError, PreflightError, ScenarioError
from drillkit.faults import Made, RevertContext, Undo, digest, record_data
from drillkit.faults.kube.base import READY_TIMEOUT, KubeFault, note, parse_workload, private_journal
from drillkit.kube import MODIFIED_BY, REVERT_FAULT, REVERT_OF, RUN_LABEL, Conflict, NotFound, Pod, Workload
from drillkit.model import Duration, Where, build, doc
from drillkit.signals import StopFlag

if TYPE_CHECKING:
    from drillkit.kube import Kube

REVERT_KEY = "revert"
"""Data key of a revert-record Secret: the revert record as JSON."""
RECORDING_FAULTS = ("bad-rollout", "scale-to-zero")
"""Faults that change a workload in place and keep a revert record; cleanup restores in this
order (the template first: scaling a broken template back up would wait on stuck pods)."""


BLIND_STATE = "state"
"""Data key of a blind exercise's revert-record Secret: {"fault": kind, "record": …} as JSON (its
annotations, shown by `kubectl describe`, would name the fault)."""


def record_name(run_id: str, kind: str, name: str, fault: str, blind: bool = False) -> str:
    """The revert-record Secret of `fault` on workload `kind/name` in this run (a valid name
    whatever the workload's name): `drillkit-revert-<run>-<digest>`, or in a blind exercise
    `<workload>-<digest>`, like the platform's own generated names. Both are derived, never
    stored, so a revert or cleanup looks for both (`record_names`)."""
    if blind:
        return f"{name[:52]}-{digest(run_id, kind, name, fault)}"
    return f"drillkit-revert-{run_id}-{digest(kind, name, fault)}"


def record_names(run_id: str, kind: str, name: str, fault: str) -> tuple[str, str]:
    return record_name(run_id, kind, name, fault), record_name(run_id, kind, name, fault, blind=True)


def drop_record(kube: Kube, ns: str, kind: str, name: str, fault: str, run_id: str) -> None:
    """After a restore: delete the fault's record, and the workload's label with the run's last
    record on it. Safe to repeat."""
    for secret in record_names(run_id, kind, name, fault):
        kube.delete_secret(ns, secret)
    release_workload(kube, ns, kind, name, run_id)


def release_workload(kube: Kube, ns: str, kind: str, name: str, run_id: str) -> bool:
    """Remove the run's `drillkit.io/modified-by` label unless one of its records remains;
    whether the workload is free of it now."""
    names = [n for f in RECORDING_FAULTS for n in record_names(run_id, kind, name, f)]
    if any(kube.secret_annotations(ns, n) is not None for n in names):
        return False
    w = kube.get_workload(kind, ns, name)
    if w is not None and w.labels.get(MODIFIED_BY) == run_id:
        kube.label_workload(kind, ns, name, {MODIFIED_BY: None})
    return True


def restore_recorded(kube: Kube, ns: str, record: str, run_id: str, stop: StopFlag | None) -> dict[str, Any]:
    """Restore a workload from its revert-record Secret (`drillkit cleanup` without a journal);
    the restore deletes the record."""
    ann = kube.secret_annotations(ns, record)
    if ann is None:
        return {"restored": False, "reason": f"record {ns}/{record} already gone"}
    fault = ann.get(REVERT_FAULT, "")
    try:
        raw = kube.secret_data(ns, record) or {}
        if BLIND_STATE in raw:  # a blind exercise's record: the fault is in the data
            state = json.loads(base64.b64decode(raw[BLIND_STATE]))
            fault, data = state["fault"], state["record"]
        else:
            data = json.loads(base64.b64decode(raw[REVERT_KEY]))
        cls = _RECORDING[fault]
        typed: Any = build(cls.Record, data, Where(f"revert record Secret {ns}/{record}", 0, ""))
    except (KeyError, ValueError, TypeError, ScenarioError) as exc:
        raise DrillkitError(
            f"revert record Secret {ns}/{record} ({fault or 'no fault'}) is unreadable "
            f"({type(exc).__name__}: {exc}); restore {ann.get(REVERT_OF)} by hand"
        ) from None
    return {"workload": ann.get(REVERT_OF), **cls.restore(kube, typed, stop, run_id)}


class _InPlace(KubeFault[Any, Any, Any]):
    """A fault that changes a workload in place and keeps its revert record in the cluster."""

    def keep_record(self, w: Workload, record: object) -> None:
        """The revert record in a run-labelled Secret next to the workload, for a cleanup that
        has lost the journal. An existing record is kept: it holds the state from before this
        run's first change. A Secret, as the record may hold a template's inline credentials."""
        blind, data = self.ctx.naming.blind, record_data(record)
        key, body = (BLIND_STATE, {"fault": self.kind, "record": data}) if blind else (REVERT_KEY, data)
        annotations = {REVERT_OF: f"{w.kind}/{w.name}"} | ({} if blind else {REVERT_FAULT: self.kind})
        try:
            self.kube.create_secret(
                w.namespace,
                self.record_name(w),
                {key: base64.b64encode(json.dumps(body).encode()).decode()},
                labels={RUN_LABEL: self.ctx.run_id},
                annotations=annotations,
            )
        except Conflict:
            self.ctx.log(f"{self.kind}: {w.ref} already has a revert record of this run; kept")

    def record_name(self, w: Workload) -> str:
        return record_name(self.ctx.run_id, w.kind, w.name, self.kind, self.ctx.naming.blind)

    def current(self, w: Workload) -> Workload:
        """The workload again at inject, still not claimed by another run."""
        now = self.kube.get_workload(w.kind, w.namespace, w.name)
        if now is None:
            raise PreflightError(f"{self.kind}: {w.ref} disappeared")
        self.claimable(now)
        return now


# --- scale-to-zero ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScaleToZeroParams:
    workload: str = doc("deployment/NAME or statefulset/NAME")
    wait: Duration = doc("how long to wait for the pods to be gone (0: don't wait)", default=60.0)
    namespace: str | None = doc("namespace (default: the scenario's target namespace)", default=None)

    def __post_init__(self) -> None:
        parse_workload(self.workload)

    @property
    def ref(self) -> tuple[str, str]:
        return parse_workload(self.workload)


@dataclass(frozen=True)
class Scaled:
    """What preflight found: the workload and the pods scaling it down deletes."""

    workload: Workload
    pods: tuple[Pod, ...]


@dataclass(frozen=True)
class ScaleRecord:
    """How to undo a scale-to-zero: the replica count to scale back to."""

    namespace: str
    kind: str
    name: str
    replicas: int


class ScaleToZero(_InPlace):
    """Scale a Deployment/StatefulSet to 0 replicas; the revert restores the exact count."""

    kind = "scale-to-zero"
    Params = ScaleToZeroParams
    Record: ClassVar[type] = ScaleRecord
    params: ScaleToZeroParams

    def preflight(self) -> Scaled:
        w = self.resolve_workload(self.params.ref)
        if w.replicas == 0:
            raise PreflightError(f"{self.kind}: {w.ref} already has 0 replicas")
        self.check_blast(
            f"replicas of {w.kind} {w.namespace}/{w.name} (scale-to-zero takes them all: set max_targets: 100%)",
            w.replicas,
            w.replicas,
        )
        return Scaled(w, tuple(p for p in self.kube.list_pods(w.namespace, w.selector) if not p.terminating))

    def plan(self, found: Scaled) -> list[str]:
        w = found.workload
        return [
            f"record the replica count in Secret {self.record_name(w)}"
            f" and label {w.ref} {MODIFIED_BY}={self.ctx.run_id}",
            f"scale {w.ref} from {w.replicas} to 0 replicas, deleting:",
            *self.pod_lines(found.pods),
            f"revert: scale back to {w.replicas}, delete the record and the label",
        ]

    def inject(self, found: Scaled, undo: Undo) -> None:
        w = self.current(found.workload)
        record = ScaleRecord(w.namespace, w.kind, w.name, self.kube.get_replicas(w.kind, w.namespace, w.name))
        undo.register(self, record)
        self.keep_record(w, record)
        self.kube.label_workload(w.kind, w.namespace, w.name, {MODIFIED_BY: self.ctx.run_id})
        self.kube.scale(w.kind, w.namespace, w.name, 0)
        self.ctx.harm_started()
        if self.params.wait > 0:
            gone = self.kube.wait_pods(
                w.namespace,
                w.selector,
                lambda pods: not [p for p in pods if not p.terminating],
                self.params.wait,
                self.ctx.stop,
            )
            if not gone:
                self.ctx.log(f"scale-to-zero: pods of {w.ref} still running after {self.params.wait:g}s")

    @classmethod
    def revert(cls, ctx: RevertContext, record: ScaleRecord) -> dict[str, Any]:
        return cls.restore(ctx.kube, record, ctx.stop, ctx.run_id)

    @classmethod
    def restore(cls, kube: Kube, record: ScaleRecord, stop: StopFlag | None, run_id: str) -> dict[str, Any]:
        """Scale back to the recorded count, then drop the in-cluster record."""
        ns, kind, name = record.namespace, record.kind, record.name
        try:
            scaled = kube.scale_from(kind, ns, name, 0, record.replicas)
        except NotFound:
            drop_record(kube, ns, kind, name, cls.kind, run_id)
            return {"gone": True}
        drop_record(kube, ns, kind, name, cls.kind, run_id)
        if not scaled:  # on-call scaled it during the drill: theirs wins
            now = kube.get_replicas(kind, ns, name)
            return {
                "restored": False,
                "changed during the drill": f"{kind} {ns}/{name} has {now} replicas, not the 0 drillkit set; "
                f"left as it is (it had {record.replicas} before the drill)",
            }
        ready = kube.wait_workload_ready(kind, ns, name, READY_TIMEOUT, stop)
        return {"replicas": record.replicas, "ready": ready}


# --- bad-rollout ------------------------------------------------------------------------------


@dataclass(frozen=True)
class BadRolloutParams:
    workload: str = doc("deployment/NAME or statefulset/NAME")
    container: str | None = doc("container whose image is broken (default: the first)", default=None)
    tag: str | None = doc("image tag to roll out (default: drillkit-nonexistent-<run id>)", default=None)
    wait: Duration = doc("how long to wait for a new pod stuck pulling (0: don't wait)", default=60.0)
    namespace: str | None = doc("namespace (default: the scenario's target namespace)", default=None)

    def __post_init__(self) -> None:
        parse_workload(self.workload)
        if self.tag is not None and not re.fullmatch(r"[\w][\w.-]{0,127}", self.tag):
            raise ValueError(f"tag: expected an image tag like broken-1, got {self.tag!r}")

    @property
    def ref(self) -> tuple[str, str]:
        return parse_workload(self.workload)


def retag(image: str, tag: str) -> str:
    """`registry:5000/repo:1.2@sha256:...` -> `registry:5000/repo:<tag>`."""
    base = image.split("@", 1)[0]
    slash = base.rfind("/")
    colon = base.rfind(":")
    if colon > slash:
        base = base[:colon]
    return f"{base}:{tag}"


def template_images(template: dict[str, Any]) -> dict[str, str]:
    """Container name -> image of a pod template."""
    return {
        str(c.get("name")): str(c.get("image"))
        for c in (template.get("spec") or {}).get("containers") or []
        if c.get("name")
    }


@dataclass(frozen=True)
class Rollout:
    """What preflight found: the workload, the container to break and its images."""

    workload: Workload
    container: str
    image_before: str
    image_after: str
    pods: tuple[Pod, ...]


@dataclass(frozen=True)
class RolloutRecord:
    """How to undo a bad-rollout: the previous image (and the whole template, for older journals)."""

    namespace: str
    kind: str
    name: str
    template: dict[str, Any]
    container: str
    image: str  # the container's image before the rollout
    broken: str | None = None  # the image drillkit set (None: a journal of an older drillkit)


class BadRollout(_InPlace):
    """Roll out an image tag that does not exist; the revert restores the previous image."""

    kind = "bad-rollout"
    Params = BadRolloutParams
    Record: ClassVar[type] = RolloutRecord
    params: BadRolloutParams
    ready_timeout: ClassVar[float] = READY_TIMEOUT
    """Seconds the revert waits for the restored workload to be Ready."""

    def preflight(self) -> Rollout:
        w = self.resolve_workload(self.params.ref)
        names = [c.name for c in w.containers]
        name = self.params.container or (names[0] if names else None)
        if name is None or name not in names:
            raise PreflightError(f"{self.kind}: {w.ref} has no container {name!r} (containers: {', '.join(names)})")
        image = next(c.image for c in w.containers if c.name == name)
        after = retag(image, self.params.tag or self.ctx.naming.name(Made.BAD_TAG, self.ctx.run_id))
        pods = tuple(p for p in self.kube.list_pods(w.namespace, w.selector) if not p.terminating)
        return Rollout(w, name, image, after, pods)

    def plan(self, found: Rollout) -> list[str]:
        w = found.workload
        return [
            f"record the pod template in Secret {self.record_name(w)}",
            f"set image of container {found.container} in {w.ref}: {found.image_before} -> "
            f"{found.image_after}, label it {MODIFIED_BY}={self.ctx.run_id}; pods to be replaced:",
            *self.pod_lines(found.pods),
            "revert: put the previous image back (the template as it was), delete the record and the label",
        ]

    def inject(self, found: Rollout, undo: Undo) -> None:
        w = self.current(found.workload)
        private_journal(self.ctx)  # the saved template may carry inline env values
        record = RolloutRecord(
            w.namespace, w.kind, w.name, w.template, found.container, found.image_before, found.image_after
        )
        undo.register(self, record)
        self.keep_record(w, record)
        self.kube.patch_workload(
            w.kind,
            w.namespace,
            w.name,
            {  # one patch: the harm and its label
                "metadata": {"labels": {MODIFIED_BY: self.ctx.run_id}},
                "spec": {"template": {"spec": {"containers": [{"name": found.container, "image": found.image_after}]}}},
            },
        )
        self.ctx.harm_started()
        if self.params.wait > 0:

            def stuck(pods: list[Pod]) -> Pod | None:
                return next(
                    (p for p in pods for c in p.containers if c.image == found.image_after and not c.running), None
                )

            pod = self.kube.wait_pods(w.namespace, w.selector, stuck, self.params.wait, self.ctx.stop)
            if pod:
                note(self.ctx, "rollout_stuck", fault=self.kind, pod=pod.name, image=found.image_after)

    @classmethod
    def revert(cls, ctx: RevertContext, record: RolloutRecord) -> dict[str, Any]:
        return cls.restore(ctx.kube, record, ctx.stop, ctx.run_id)

    @classmethod
    def restore(cls, kube: Kube, record: RolloutRecord, stop: StopFlag | None, run_id: str) -> dict[str, Any]:
        """Put the container's recorded image back (if it still runs the one drillkit set), drop
        the in-cluster record, wait for Ready."""
        ns, kind, name, timeout = record.namespace, record.kind, record.name, cls.ready_timeout
        current = kube.get_workload(kind, ns, name)
        if current is None:
            drop_record(kube, ns, kind, name, cls.kind, run_id)
            return {"gone": True}
        changed = cls._changed(current, record)
        if record.broken is None and current.template != record.template:  # an older journal
            kube.replace_template(kind, ns, name, record.template)
        elif changed is None and current.template != record.template:
            # only the image drillkit broke goes back: on-call's other template changes stay
            names = [c.get("name") for c in (current.template.get("spec") or {}).get("containers") or []]
            path = f"/spec/template/spec/containers/{names.index(record.container)}/image"
            if not kube.replace_if(kind, ns, name, path, record.broken, record.image):
                changed = cls._changed(kube.get_workload(kind, ns, name) or current, record) or "changed meanwhile"
        drop_record(kube, ns, kind, name, cls.kind, run_id)
        if changed is not None:  # on-call rolled something else out during the drill: theirs wins
            return {"restored": False, "changed during the drill": f"{kind} {ns}/{name}: {changed}; left as it is"}
        if kind != "StatefulSet":
            ready = kube.wait_workload_ready(kind, ns, name, timeout, stop)
            return {"restored": True, "ready": ready}
        # A StatefulSet (OrderedReady) never replaces a pod stuck on the broken image by itself
        # once the template is back: delete the stuck pods so the controller recreates them.
        images = template_images(record.template)
        deleted = cls._delete_stuck(kube, ns, name, current.selector, images)
        if not kube.wait_workload_ready(kind, ns, name, timeout, stop, images):
            raise DrillkitError(
                f"bad-rollout revert: template of StatefulSet {ns}/{name} restored, but it was "
                f"not Ready within {timeout:g}s (stuck pods deleted: {', '.join(deleted) or 'none'})"
            )
        return {"restored": True, "ready": True, "stuck_pods_deleted": deleted}

    @staticmethod
    def _changed(current: Workload, record: RolloutRecord) -> str | None:
        """Why the workload is no longer as drillkit left it (None: it is, or already restored)."""
        if current.template == record.template or record.broken is None:
            return None
        image = next((c.image for c in current.containers if c.name == record.container), None)
        if image is None:
            return f"container {record.container} is gone from the pod template"
        if image != record.broken:
            return f"container {record.container} runs {image}, not the {record.broken} drillkit set"
        return None

    @staticmethod
    def _delete_stuck(kube: Kube, ns: str, name: str, selector: str, images: dict[str, str]) -> list[str]:
        """Delete the StatefulSet's not-Ready pods running other images than the template's."""
        deleted = []
        for pod in kube.list_pods(ns, selector):
            ctrl = pod.controller
            if ctrl is None or ctrl.kind != "StatefulSet" or ctrl.name != name:
                continue
            if pod.ready or pod.terminating:
                continue
            broken = any(c.name in images and c.image != images[c.name] for c in pod.containers)
            if broken and kube.delete_pod(ns, pod.name, uid=pod.uid):
                deleted.append(pod.name)
        return deleted


_RECORDING: dict[str, type[ScaleToZero] | type[BadRollout]] = {"scale-to-zero": ScaleToZero, "bad-rollout": BadRollout}
