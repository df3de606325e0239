"""LeaderWorkerSet v0.10.0's rolling update, ported to run a rendered LeaderWorkerSet through it.

Ported from kubernetes-sigs/lws at tag v0.10.0 (the version the program installs):
- pkg/webhooks/leaderworkerset_webhook.go `Default`: a spec without
  rolloutStrategy.rollingUpdateConfiguration gets maxUnavailable 1, maxSurge 0, partition 0; the CRD
  (../shared/reference/crds/leaderworkerset.x-k8s.io_leaderworkersets.yaml) defaults the fields a
  given configuration leaves out the same way.
- the same file's `ValidateCreate`/`ValidateUpdate` rules for the two: int or percent, at most 100%,
  not both 0 (with replicas > 0).
- pkg/controllers/leaderworkerset_controller.go `rollingUpdateParameters`,
  `calculateRollingUpdateReplicas`, `rollingUpdatePartition`, `calculateContinuousReadyReplicas`,
  `calculateLWSUnreadyReplicas`: the leader StatefulSet's replicas and partition at each reconcile.

The StatefulSet's own part is modelled after the Kubernetes StatefulSet RollingUpdate strategy: pods
at or above the partition are replaced one at a time from the highest ordinal down, each only once
the updated pods above it are ready; new ordinals start at the update revision when at or above the
partition. A group that was (re)created is not ready during the step it was created in and ready at
the next one (its startup takes one step).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

WEBHOOK_DEFAULTS = {"maxUnavailable": 1, "maxSurge": 0, "partition": 0}


class InvalidRollout(ValueError):
    pass


def scaled(value: int | str, total: int, round_up: bool) -> int:
    """intstr.GetScaledValueFromIntOrPercent."""
    if isinstance(value, int):
        return value
    if not value.endswith("%"):
        raise InvalidRollout(f"invalid value {value!r}")
    fraction = int(value[:-1]) * total / 100
    return math.ceil(fraction) if round_up else math.floor(fraction)


def rolling_update_configuration(spec: dict[str, Any]) -> dict[str, Any]:
    """The configuration the controller works with once the webhook (and the CRD) defaulted `spec`."""
    strategy = spec.get("rolloutStrategy") or {}
    if strategy.get("type", "RollingUpdate") != "RollingUpdate":
        raise InvalidRollout(f"rolloutStrategy.type {strategy.get('type')!r}")
    given = strategy.get("rollingUpdateConfiguration")
    config = dict(WEBHOOK_DEFAULTS) if given is None else {**WEBHOOK_DEFAULTS, **given}
    replicas = spec.get("replicas", 1)
    for key in ("maxUnavailable", "maxSurge"):
        value = config[key]
        if isinstance(value, int) and value < 0:
            raise InvalidRollout(f"{key} must be >= 0")
        if isinstance(value, str) and scaled(value, 100, False) > 100:
            raise InvalidRollout(f"{key} must not be more than 100%")
    if config["partition"] < 0:
        raise InvalidRollout("partition must be >= 0")
    if scaled(config["maxUnavailable"], replicas, False) == 0 and scaled(config["maxSurge"], replicas, True) == 0:
        if replicas:
            raise InvalidRollout("maxUnavailable must not be 0 when `maxSurge` is 0")
    return config


@dataclass
class State:
    ready: bool
    updated: bool


def _non_zero(value: int) -> int:
    return max(value, 0)


def calculate_rolling_update_replicas(lws_replicas: int, max_surge: int, max_unavailable: int, unready: int) -> int:
    if unready <= max_surge:
        return lws_replicas + _non_zero(unready - max_unavailable)
    return lws_replicas + max_surge


def calculate_lws_unready_replicas(states: list[State], lws_replicas: int) -> int:
    return sum(
        1 for idx in range(lws_replicas) if idx >= len(states) or not states[idx].ready or not states[idx].updated
    )


def calculate_continuous_ready_replicas(states: list[State]) -> int:
    count = 0
    for state in reversed(states):
        if not state.ready or not state.updated:
            break
        count += 1
    return count


def rolling_update_partition(states: list[State], sts_replicas: int, rolling_step: int, current: int) -> int:
    step_partition = _non_zero(sts_replicas - calculate_continuous_ready_replicas(states) - rolling_step)
    unavailable = sum(1 for idx in range(step_partition) if not states[idx].ready)
    partition = step_partition + unavailable
    for idx in range(min(partition, sts_replicas - 1), step_partition - 1, -1):
        if not states[idx].ready or states[idx].updated:
            partition = idx
        else:
            break
    return min(partition, current)


def rolling_update_parameters(
    config: dict[str, Any],
    lws_replicas: int,
    sts_replicas: int,
    sts_partition: int,
    states: list[State],
    lws_updated: bool,
) -> tuple[int, int]:
    """(StatefulSet partition, StatefulSet replicas) for one reconcile (the original replicas never change here)."""
    max_surge = min(scaled(config["maxSurge"], lws_replicas, True), lws_replicas)
    max_unavailable = scaled(config["maxUnavailable"], lws_replicas, False)
    burst = lws_replicas + max_surge

    def result(partition: int, replicas: int) -> tuple[int, int]:
        return max(partition, config["partition"]), replicas

    if lws_updated:
        partition = min(lws_replicas, sts_replicas)
        if sts_replicas < lws_replicas:
            return result(partition, lws_replicas)
        return result(
            partition, calculate_rolling_update_replicas(lws_replicas, max_surge, max_unavailable, lws_replicas)
        )
    if sts_partition == 0 and sts_replicas == lws_replicas:
        return result(0, lws_replicas)
    if sts_replicas < lws_replicas:
        return result(sts_partition, lws_replicas)
    unready = calculate_lws_unready_replicas(states, lws_replicas)
    step = max_unavailable + max_surge - (burst - sts_replicas)
    partition = rolling_update_partition(states, sts_replicas, step, sts_partition)
    return result(partition, calculate_rolling_update_replicas(lws_replicas, max_surge, max_unavailable, unready))


@dataclass
class Rollout:
    serving: list[int]  # groups ready to serve after each reconcile (the trough of that step)
    groups: list[int]  # groups that exist after each reconcile (each holds GPUs)
    finished: bool


@dataclass
class Group:
    revision: str
    ready: bool


def roll_out_a_template_change(spec: dict[str, Any], replicas: int, max_steps: int = 100) -> Rollout:
    """`replicas` ready groups at the old revision; the template changes; reconcile until done."""
    config = rolling_update_configuration({**spec, "replicas": replicas})
    groups = [Group("old", True) for _ in range(replicas)]
    sts_replicas, sts_partition = replicas, 0
    serving: list[int] = []
    existing: list[int] = []
    for step in range(max_steps):
        states = [State(g.ready, g.revision == "new") for g in groups]
        sts_partition, sts_replicas = rolling_update_parameters(
            config, replicas, sts_replicas, sts_partition, states, lws_updated=step == 0
        )
        del groups[sts_replicas:]
        while len(groups) < sts_replicas:
            groups.append(Group("new" if len(groups) >= sts_partition else "old", False))
        stale = [i for i in range(sts_partition, len(groups)) if groups[i].revision == "old"]
        waiting = any(not groups[i].ready for i in range(sts_partition, len(groups)) if i not in stale)
        if stale and not waiting:
            groups[stale[-1]] = Group("new", False)
        serving.append(sum(g.ready for g in groups))
        existing.append(len(groups))
        for g in groups:
            g.ready = True
        if sts_partition == 0 and sts_replicas == replicas and all(g.revision == "new" for g in groups):
            return Rollout(serving, existing, True)
    return Rollout(serving, existing, False)
