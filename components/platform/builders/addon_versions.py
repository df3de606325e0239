"""Are the EKS managed add-on builds we pin published for the cluster's Kubernetes version?

EKS lists an add-on's builds per Kubernetes version only through its API (DescribeAddonVersions;
the user guide names builds per version for coredns and kube-proxy alone), and CreateAddon with a
build that is not published for the cluster's version fails mid-`up`, after the cluster (about
ten minutes) exists. So the same judgement runs twice, with what each side can read:

- at preview (components/providers/addon_check.py): Pulumi's `aws.eks.getAddonVersion` answers only
  the newest build for the version, so a pin newer than that, or an add-on with no build at all for
  the version, is certain to fail (`judge_newest`);
- `python -m tritonllm doctor` (boto3 DescribeAddonVersions) reads every published build, so a pin
  that is simply not among them is caught too (`judge_published`).

Pure: the readers pass plain data in.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from components.catalog import versions
from components.config import StackConfig

# "v1.20.4-eksbuild.1": the upstream version, then AWS's build number (compared numerically).
_BUILD = re.compile(r"^v(\d+)\.(\d+)\.(\d+)(?:-eksbuild\.(\d+))?$")


def parse_build(build: str) -> tuple[int, int, int, int]:
    """(major, minor, patch, eksbuild) of an add-on build string; ValueError names the bad one."""
    match = _BUILD.match(build.strip())
    if not match:
        raise ValueError(f"{build!r} is not an EKS add-on build like v1.20.4-eksbuild.1")
    major, minor, patch, eks_build = match.groups()
    return int(major), int(minor), int(patch), int(eks_build or 0)


# The Mountpoint for Amazon S3 CSI driver: installed by the cluster's add-on loop when a model reads its
# weights through it (models[].weights.delivery: mountpoint, components/serving/builders/mountpoint_weights.py).
MOUNTPOINT_ADDON = "aws-mountpoint-s3-csi-driver"


def cluster_optional_addons(cfg: StackConfig) -> list[str]:
    """The optional add-ons the cluster's own add-on loop installs for this stack (CloudWatch's is
    installed by ContainerInsights, with its agent's role)."""
    return [MOUNTPOINT_ADDON] if any(m.weights.delivery == "mountpoint" for m in cfg.models) else []


EFS_ADDON = "aws-efs-csi-driver"


def addons_mounted_by_models(cfg: StackConfig) -> list[str]:
    """The CSI driver add-ons whose volumes serving pods mount: Mountpoint for `weights.delivery:
    mountpoint`, EFS for `engineStorage: efs` (installed with every cluster, EKS_ADDONS)."""
    mounted = [MOUNTPOINT_ADDON] if any(m.weights.delivery == "mountpoint" for m in cfg.models) else []
    if cfg.efs.enabled and any(m.builds_engine and m.engine_storage == "efs" for m in cfg.models):
        mounted.append(EFS_ADDON)
    return mounted


def stack_addons(cfg: StackConfig) -> dict[str, str]:
    """The add-ons this stack installs, with their pinned builds (components/catalog/versions.py)."""
    addons = dict(versions.EKS_ADDONS)
    if cfg.monitoring.cloudwatch.enabled:
        name = "amazon-cloudwatch-observability"
        addons[name] = versions.OPTIONAL_EKS_ADDONS[name]
    for name in cluster_optional_addons(cfg):
        addons[name] = versions.OPTIONAL_EKS_ADDONS[name]
    return addons


@dataclass(frozen=True)
class AddonProblem:
    addon: str
    pinned: str
    message: str

    def fix(self, kubernetes_version: str) -> str:
        return (
            f"pin a build published for Kubernetes {kubernetes_version} in components/catalog/versions.py "
            f"(aws eks describe-addon-versions --addon-name {self.addon} --kubernetes-version {kubernetes_version} "
            "--query 'addons[].addonVersions[].addonVersion')"
        )


def judge_newest(
    pinned: Mapping[str, str], newest: Mapping[str, str | None], kubernetes_version: str
) -> list[AddonProblem]:
    """Preview's judgement: `newest[name]` is the newest published build for the version, None when
    EKS publishes none. Only certain failures are problems (a pin at or below the newest may still
    be unlisted: doctor reads the whole list)."""
    problems = []
    for name, build in sorted(pinned.items()):
        if name not in newest:
            continue  # not read (the reader reported why)
        top = newest[name]
        if top is None:
            problems.append(
                AddonProblem(name, build, f"EKS publishes no {name} build for Kubernetes {kubernetes_version}")
            )
        elif parse_build(build) > parse_build(top):
            problems.append(
                AddonProblem(
                    name,
                    build,
                    f"{name} {build} is newer than the newest build EKS publishes for Kubernetes "
                    f"{kubernetes_version} ({top})",
                )
            )
    return problems


def judge_published(
    pinned: Mapping[str, str], published: Mapping[str, Sequence[str]], kubernetes_version: str
) -> list[AddonProblem]:
    """doctor's judgement: `published[name]` is every build EKS lists for the version."""
    problems = []
    for name, build in sorted(pinned.items()):
        if name not in published:
            continue
        builds = sorted(published[name], key=parse_build, reverse=True)
        if build in builds:
            continue
        listed = ", ".join(builds[:4]) + (" ..." if len(builds) > 4 else "") if builds else "none"
        problems.append(
            AddonProblem(
                name,
                build,
                f"{name} {build} is not published for Kubernetes {kubernetes_version} (published: {listed})",
            )
        )
    return problems


def render(
    pinned: Mapping[str, str],
    problems: Sequence[AddonProblem],
    unread: Mapping[str, str],
    kubernetes_version: str,
) -> str:
    """doctor's section: one line per add-on, then the fix of each problem."""
    by_name = {p.addon: p for p in problems}
    lines = [f"EKS managed add-ons for Kubernetes {kubernetes_version}:"]
    for name, build in sorted(pinned.items()):
        if name in unread:
            lines.append(f"  ? {name} {build}: could not read ({unread[name]})")
        elif name in by_name:
            lines.append(f"  ✗ {by_name[name].message}")
            lines.append(f"      fix: {by_name[name].fix(kubernetes_version)}")
        else:
            lines.append(f"  ✓ {name} {build} is published")
    return "\n".join(lines)
