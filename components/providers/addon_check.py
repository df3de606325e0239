"""The EKS add-on build check at preview: is each pinned add-on build publishable on the cluster's
Kubernetes version? Read through Pulumi's `aws:eks/getAddonVersion` invoke (the stack's own AWS
provider), judged by components/platform/builders/addon_versions.py, before any resource exists.

getAddonVersion with mostRecent answers the newest build for the version. When EKS has none the
provider's data source fails with "empty result" (terraform-provider-aws
internal/service/eks/addon_version_data_source.go, findAddonVersionByTwoPartKey: tfresource.NewEmptyResultError),
which is the answer "no build", not a read failure.

Under `capacityCheck: error` a certain failure fails the preview (ConfigError); under `warn` it is a
warning; `off` reads nothing (offline previews).
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from components.catalog import versions
from components.config import ConfigError, StackConfig
from components.platform.builders import addon_versions


def _newest_builds(
    names: list[str], provider: pulumi.ProviderResource | None
) -> tuple[dict[str, str | None], dict[str, str]]:
    opts = pulumi.InvokeOptions(provider=provider) if provider is not None else None
    newest: dict[str, str | None] = {}
    unread: dict[str, str] = {}
    for name in names:
        try:
            result = aws.eks.get_addon_version(
                addon_name=name, kubernetes_version=versions.EKS_VERSION, most_recent=True, opts=opts
            )
        except Exception as exc:  # noqa: BLE001 - an unreadable answer is a warning, never a crash
            text = str(exc).strip()
            if "empty result" in text.lower():
                newest[name] = None
            else:
                unread[name] = text.splitlines()[-1] if text else repr(exc)
            continue
        newest[name] = result.version or None
    return newest, unread


def check_addon_versions(
    cfg: StackConfig, provider: pulumi.ProviderResource | None = None
) -> list[addon_versions.AddonProblem]:
    """Raise ConfigError (capacityCheck: error) or warn (warn) for pins EKS cannot install."""
    if cfg.capacity_check == "off":
        return []
    pinned = addon_versions.stack_addons(cfg)
    newest, unread = _newest_builds(sorted(pinned), provider)
    for name, why in sorted(unread.items()):
        pulumi.log.warn(f"add-ons: could not read the builds of {name} for Kubernetes {versions.EKS_VERSION}: {why}")
    problems = addon_versions.judge_newest(pinned, newest, versions.EKS_VERSION)
    if not problems:
        return []
    lines = [f"{p.message}: {p.fix(versions.EKS_VERSION)}" for p in problems]
    if cfg.capacity_check == "error":
        raise ConfigError(
            [("capacityCheck", f"{line} (add-on check at preview; capacityCheck: warn only warns)") for line in lines]
        )
    for line in lines:
        pulumi.log.warn(f"add-ons: {line}")
    return problems
