"""Admission rules of the Kubernetes API test server: what a real apiserver refuses that
drillkit's faults run into.

Why: a permissive server lets a fault pass that fails on a real cluster. Modelled here, only
for what drillkit touches:
- Pod Security admission (`pod-security.kubernetes.io/enforce` on the namespace): `baseline`
  refuses privileged pods, host namespaces/ports/paths and capabilities beyond the default set
  (NET_ADMIN); `restricted` also requires runAsNonRoot, allowPrivilegeEscalation: false,
  capabilities drop ALL and a RuntimeDefault/Localhost seccomp profile. Checked on pod
  creation (the Job controller's too) and on ephemeral containers.
- Ephemeral containers can only be added: changing or removing one is 422.
- Field selectors: only the fields the real API indexes for each resource; others are 400.
"""

from __future__ import annotations

from typing import Any

from .store import ApiError, Obj, parse_field_selector

ENFORCE = "pod-security.kubernetes.io/enforce"
BASELINE_CAPS = {
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
    "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
}  # fmt: skip
COMMON_FIELDS = {"metadata.name", "metadata.namespace"}
FIELDS = {
    "pods": COMMON_FIELDS
    | {
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "spec.hostNetwork",
        "status.phase",
        "status.podIP",
        "status.nominatedNodeName",
    },
    "nodes": COMMON_FIELDS | {"spec.unschedulable"},
    "secrets": COMMON_FIELDS | {"type"},
    "events": COMMON_FIELDS
    | {
        "involvedObject.kind",
        "involvedObject.namespace",
        "involvedObject.name",
        "involvedObject.uid",
        "involvedObject.apiVersion",
        "involvedObject.resourceVersion",
        "involvedObject.fieldPath",
        "reason",
        "reportingComponent",
        "source",
        "type",
    },
    "namespaces": COMMON_FIELDS | {"status.phase"},
    "jobs": COMMON_FIELDS | {"status.successful"},
    "replicasets": COMMON_FIELDS | {"status.replicas"},
}


def check_field_selector(resource: str, text: str | None) -> None:
    """400, as the real API answers, for a field the resource does not support."""
    allowed = FIELDS.get(resource, COMMON_FIELDS)
    for field, _, _ in parse_field_selector(text):
        if field not in allowed:
            kind = resource[:-1].capitalize() if resource.endswith("s") else resource
            raise ApiError(400, f'field label not supported: "{field}" ({kind})', "BadRequest")


def check_ephemeral_update(current: Obj, new_ephemeral: list[Obj]) -> None:
    """Ephemeral containers may be added, never changed or removed (422 like the real API)."""
    name = current["metadata"]["name"]
    new = {c.get("name"): c for c in new_ephemeral}
    for old in current["spec"].get("ephemeralContainers") or []:
        if old["name"] not in new:
            raise ApiError(
                422,
                f'Pod "{name}" is invalid: spec.ephemeralContainers: Forbidden: existing ephemeral containers '
                f'"{old["name"]}" may not be removed',
                "Invalid",
            )
        if new[old["name"]] != old:
            raise ApiError(
                422,
                f'Pod "{name}" is invalid: spec.ephemeralContainers[{old["name"]}]: Forbidden: existing ephemeral '
                "containers may not be changed",
                "Invalid",
            )


def pod_security(level: str | None, pod: Obj) -> list[str]:
    """The violations of Pod Security `level` (baseline | restricted) by a pod spec, in the
    words the real admission plugin uses; [] if it is allowed."""
    if level not in ("baseline", "restricted"):
        return []
    spec: dict[str, Any] = pod.get("spec") or {}
    psc = spec.get("securityContext") or {}
    containers = [
        *(spec.get("initContainers") or []),
        *(spec.get("containers") or []),
        *(spec.get("ephemeralContainers") or []),
    ]
    out = []
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(key):
            out.append(f"host namespaces ({key}=true)")
    if any("hostPath" in v for v in spec.get("volumes") or []):
        out.append("hostPath volumes")
    for c in containers:
        sc, name = c.get("securityContext") or {}, c.get("name")
        caps = sc.get("capabilities") or {}
        if sc.get("privileged"):
            out.append(f'privileged (container "{name}" must not set securityContext.privileged=true)')
        if any(p.get("hostPort") for p in c.get("ports") or []):
            out.append(f'hostPort (container "{name}" uses hostPort)')
        allowed = {"NET_BIND_SERVICE"} if level == "restricted" else BASELINE_CAPS
        if extra := [x for x in caps.get("add") or [] if x not in allowed]:
            what = ", ".join(f'"{x}"' for x in extra)
            out.append(
                f"{'unrestricted' if level == 'restricted' else 'non-default'} capabilities "
                f'(container "{name}" must not include {what} in securityContext.capabilities.add)'
            )
        if level != "restricted":
            continue
        if sc.get("allowPrivilegeEscalation") is not False:
            out.append(f'allowPrivilegeEscalation != false (container "{name}" must set '
                       "securityContext.allowPrivilegeEscalation=false)")  # fmt: skip
        if "ALL" not in (caps.get("drop") or []):
            out.append(f'unrestricted capabilities (container "{name}" must set '
                       'securityContext.capabilities.drop=["ALL"])')  # fmt: skip
        if not sc.get("runAsNonRoot", psc.get("runAsNonRoot")):
            out.append(f'runAsNonRoot != true (container "{name}" must set securityContext.runAsNonRoot=true)')
        if sc.get("runAsUser", psc.get("runAsUser")) == 0:
            out.append(f'runAsUser=0 (container "{name}" must not set runAsUser=0)')
        profile = (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
        if profile not in ("RuntimeDefault", "Localhost"):
            out.append(f'seccompProfile (container "{name}" must set securityContext.seccompProfile.type to '
                       '"RuntimeDefault" or "Localhost")')  # fmt: skip
    return out


def admit_pod(namespace: Obj | None, pod: Obj) -> None:
    """403, as Pod Security admission answers, if the namespace's enforced level refuses `pod`."""
    level = (((namespace or {}).get("metadata") or {}).get("labels") or {}).get(ENFORCE)
    if problems := pod_security(level, pod):
        name = (pod.get("metadata") or {}).get("name") or (pod.get("metadata") or {}).get("generateName", "")
        raise ApiError(
            403,
            f'pods "{name}" is forbidden: violates PodSecurity "{level}:latest": ' + ", ".join(problems),
            "Forbidden",
            {"name": name, "kind": "pods"},
        )
