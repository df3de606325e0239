"""What the Mountpoint for Amazon S3 CSI driver does with our PersistentVolume, ported from its source at
the pinned release (awslabs/mountpoint-s3-csi-driver tag v2.7.0, the add-on build in
components/catalog/versions.py OPTIONAL_EKS_ADDONS), so tests read our volumes the way the driver will:

- `publish_args`: pkg/driver/node/node.go NodePublishVolume (the flags Mountpoint gets) with
  pkg/mountpoint/args.go ParseArgs (how a mountOptions entry becomes a flag);
- `sharing_key`: cmd/aws-s3-csi-controller/csicontroller/reconciler.go buildFieldFilters (which workload
  pods share one Mountpoint Pod on a node, docs/MOUNTPOINT_POD_SHARING.md).

Test code only: the program never runs these.
"""

from __future__ import annotations

from typing import Any

# pkg/mountpoint/args.go ParseArgs: "disallow options that don't make sense in CSI" (dropped silently).
DROPPED = frozenset({"--foreground", "-f", "--help", "-h", "--version", "-v"})
NO_VALUE = ""


class DriverRefusal(ValueError):
    """An InvalidArgument error of NodePublishVolume: the pod stays in ContainerCreating."""


def normalize_key(key: str) -> str:
    """args.go normalizeKey: prepend "--" unless the key starts with "-"."""
    return key if key.startswith("-") else "--" + key


def parse_args(passed: list[str]) -> dict[str, str]:
    """args.go ParseArgs: trim; split on the first space or "=", whichever comes first; normalize the key;
    drop DROPPED. A set of (key, value) in Go; a dict here (our options repeat no key, which
    `test_mount_options_repeat_no_flag` checks, so nothing is lost)."""
    args: dict[str, str] = {}
    for a in passed:
        trimmed = a.strip(" ")
        space, equals = trimmed.find(" "), trimmed.find("=")
        if space != -1 and (equals == -1 or space < equals):
            key, value = trimmed.split(" ", 1)
            value = value.strip(" ")
        elif equals != -1:
            key, value = trimmed.split("=", 1)
            value = value.strip(" ")
        else:
            key, value = trimmed, NO_VALUE
        key = normalize_key(key)
        if key in DROPPED:
            continue
        args[key] = value
    return args


def publish_args(pv: dict[str, Any], *, fs_group: int | None, readonly: bool = True) -> dict[str, str]:
    """node.go NodePublishVolume's flags for `pv` mounted by a pod with `fs_group` (kubelet passes it as
    volume_mount_group: the driver advertises VOLUME_MOUNT_GROUP). Raises DriverRefusal where it refuses."""
    spec = pv["spec"]
    attributes = spec["csi"].get("volumeAttributes", {})
    if "bucketName" not in attributes:
        raise DriverRefusal("Bucket name not provided")
    modes = set(spec["accessModes"])
    if not modes <= {"ReadWriteMany", "ReadOnlyMany"}:  # node.go volumeCaps: MULTI_NODE_MULTI_WRITER, _READER_ONLY
        raise DriverRefusal("Volume capability not supported")
    passed: list[str] = []
    if readonly or "ReadOnlyMany" in modes:
        passed.append("--read-only")
    passed += spec.get("mountOptions", [])
    args = parse_args(passed)
    if "-o" in args:
        raise DriverRefusal("Running mount-s3 with mount flag -o is not supported in CSI Driver.")
    if fs_group is not None:
        # "If these flags were already set by customer in PV mountOptions then we won't override them"
        args.setdefault("--gid", str(fs_group))
        args.setdefault("--allow-other", NO_VALUE)
        args.setdefault("--dir-mode", "770")
        args.setdefault("--file-mode", "660")
    if "--allow-other" not in args:
        args.setdefault("--allow-root", NO_VALUE)
    limit = attributes.get("cacheEmptyDirSizeLimit", "")
    if limit and attributes.get("cache") == "emptyDir":
        limit_bytes = quantity_bytes(limit)
        limit_mib = limit_bytes // (1024 * 1024)
        safe_mib = int(limit_bytes * 0.95 / (1024 * 1024))
        if "--max-cache-size" in args:
            asked = int(args["--max-cache-size"])
            if asked > limit_mib:
                raise DriverRefusal("--max-cache-size exceeds cacheEmptyDirSizeLimit")
            if attributes.get("cacheEmptyDirMedium", "") == "" and asked > safe_mib:
                del args["--max-cache-size"]
        if attributes.get("cacheEmptyDirMedium", "") == "":
            args.setdefault("--max-cache-size", str(safe_mib))
    return args


def quantity_bytes(quantity: str) -> int:
    """resource.ParseQuantity(...).Value() for the binary-suffixed quantities we write."""
    units = {"Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return int(float(quantity[: -len(suffix)]) * factor)
    return int(quantity)


def sharing_key(pod: dict[str, Any], pv: dict[str, Any], role_arn: str = "") -> tuple[Any, ...]:
    """reconciler.go buildFieldFilters: two workload pods share a Mountpoint Pod exactly when these match
    (node, PV name, volume handle, mount options joined by ",", fsGroup, authentication source; with
    `pod` credentials also the namespace, the service account and its IRSA role annotation)."""
    spec = pod["spec"]
    attributes = pv["spec"]["csi"].get("volumeAttributes", {})
    auth = attributes.get("authenticationSource") or "driver"
    fs_group = spec.get("securityContext", {}).get("fsGroup")
    key: tuple[Any, ...] = (
        spec.get("nodeName", ""),
        pv["metadata"]["name"],
        pv["spec"]["csi"]["volumeHandle"],
        ",".join(pv["spec"].get("mountOptions", [])),
        "" if fs_group is None else str(fs_group),
        auth,
    )
    if auth == "pod":
        key += (pod["metadata"]["namespace"], spec.get("serviceAccountName") or "default", role_arn)
    return key
