"""`tritonllm coldstart`: the phase report from recorded sequences, checked against hand-computed times.

The recorded cold start below is what the API returns (pod, its events, the NodeClaim, the Node, the
serving container's log read with timestamps) for a new replica on a new g6e node, scaled up at 10:00:00:

    10:00:02 NodeClaim created (pod Nominated)      10:00:06 Launched      10:00:52 Initialized
    10:00:59 stage-engine started                   10:01:14 stage-engine finished (exit 0)
    10:01:15 Pulling the serving image              10:02:20 Pulled ("in 1m4.9s", 17.0 GB)
    10:02:22 triton started                         10:02:47.512345 "successfully loaded 'llama'"
    10:02:50 pod Ready                              10:02:51 request sent, first chunk 0.4 s later

Hand-computed: node launched 4.0 s (created -> Launched), node ready 46.0 s (Launched -> Initialized),
weights staged 15.0 s, image pulled 65.0 s, model loaded 25.512345 s (started -> log line), first token
0.4 s; first token at +171.4 s.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tritonllm import coldstart
from tritonllm.coldstart import Record, format_report, phases, records_from_cluster, total_s

T0 = datetime(2026, 12, 7, 10, 0, 0, tzinfo=UTC)
IMAGE = "nvcr.io/nvidia/tritonserver:26.01-vllm-python-py3"


def _ts(h: int, m: int, s: int) -> str:
    return f"2026-12-07T{h:02d}:{m:02d}:{s:02d}Z"


def _event(reason: str, at: str, message: str = "", field: str = "") -> dict[str, Any]:
    return {
        "reason": reason,
        "message": message,
        "firstTimestamp": at,
        "lastTimestamp": at,
        "eventTime": None,
        "involvedObject": {"kind": "Pod", "name": "triton-abc", **({"fieldPath": field} if field else {})},
    }


STAGE = "spec.initContainers{stage-engine}"
SERVE = "spec.containers{triton}"


def recorded() -> dict[str, Any]:
    return {
        "nodeclaim": {
            "metadata": {"name": "g6e-x7k2p", "creationTimestamp": _ts(10, 0, 2)},
            "status": {
                "nodeName": "ip-10-0-1-5.ec2.internal",
                "conditions": [
                    {"type": "Launched", "status": "True", "lastTransitionTime": _ts(10, 0, 6)},
                    {"type": "Registered", "status": "True", "lastTransitionTime": _ts(10, 0, 38)},
                    {"type": "Initialized", "status": "True", "lastTransitionTime": _ts(10, 0, 52)},
                ],
            },
        },
        "node": {"status": {"conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": _ts(10, 0, 45)}]}},
        "events": [
            _event("Nominated", _ts(10, 0, 2), "Pod should schedule on: nodeclaim/g6e-x7k2p"),
            _event("Scheduled", _ts(10, 0, 53), "Successfully assigned llama/triton-abc to ip-10-0-1-5"),
            _event("Pulling", _ts(10, 0, 54), 'Pulling image "amazon/aws-cli"', STAGE),
            _event("Pulled", _ts(10, 0, 58), 'Successfully pulled image "amazon/aws-cli" in 3.9s', STAGE),
            _event("Started", _ts(10, 0, 59), "Started container stage-engine", STAGE),
            _event("Pulling", _ts(10, 1, 15), f'Pulling image "{IMAGE}"', SERVE),
            _event(
                "Pulled",
                _ts(10, 2, 20),
                f'Successfully pulled image "{IMAGE}" in 1m4.9s (1m4.9s including waiting). '
                "Image size: 17012345678 bytes.",
                SERVE,
            ),
            _event("Started", _ts(10, 2, 22), "Started container triton", SERVE),
        ],
        "pod": {
            "spec": {"nodeName": "ip-10-0-1-5.ec2.internal"},
            "status": {
                "initContainerStatuses": [
                    {
                        "name": "stage-engine",
                        "state": {
                            "terminated": {"exitCode": 0, "startedAt": _ts(10, 0, 59), "finishedAt": _ts(10, 1, 14)}
                        },
                    }
                ],
                "containerStatuses": [{"name": "triton", "state": {"running": {"startedAt": _ts(10, 2, 22)}}}],
                "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": _ts(10, 2, 50)}],
            },
        },
        "log": (
            "2026-12-07T10:02:40.000000001Z I1207 10:02:40.000000 1 server.cc:674] loading\n"
            "2026-12-07T10:02:47.512345678Z I1207 10:02:47.512345 1 model_lifecycle.cc:849] "
            "\"successfully loaded 'llama'\"\n"
        ),
        "request": {"sent": T0 + timedelta(seconds=171), "token": T0 + timedelta(seconds=171.4)},
    }


def run(rec: dict[str, Any]) -> dict[str, coldstart.Phase]:
    records = records_from_cluster(rec["pod"], rec["events"], rec["nodeclaim"], rec["node"], rec["log"], "llama")
    if rec["request"]["sent"] is not None:
        records.append(Record(rec["request"]["sent"], "Request", "Sent"))
    if rec["request"]["token"] is not None:
        records.append(Record(rec["request"]["token"], "Request", "FirstToken"))
    result = phases(records, T0)
    assert sorted(p.name for p in result) == sorted(coldstart.PHASES)
    return {p.name: p for p in result}


def took(result: dict[str, coldstart.Phase]) -> dict[str, float | None]:
    return {name: (None if p.took_s is None else round(p.took_s, 6)) for name, p in result.items()}


NORMAL = {
    "node launched": 4.0,
    "node ready": 46.0,
    "weights staged": 15.0,
    "image pulled": 65.0,
    "model loaded": 25.512345,
    "first token": 0.4,
}


def test_a_normal_cold_start_against_hand_computed_times():
    result = run(recorded())
    assert took(result) == NORMAL
    assert [round(result[n].at_s or 0, 6) for n in coldstart.PHASES] == [6.0, 52.0, 74.0, 140.0, 167.512345, 171.4]
    assert result["image pulled"].note == "kubelet: 1m4.9s, 17.0 GB"
    ordered = phases(
        records_from_cluster(recorded()["pod"], recorded()["events"], recorded()["nodeclaim"], None, "", "llama"),
        T0,
    )
    # printed in the order they ended: staging (an init container) ends before the serving image is pulled
    assert [p.name for p in ordered][:4] == ["node launched", "node ready", "weights staged", "image pulled"]
    report = format_report(list(result.values()), goal_s=120)
    assert "total: 171.4s from scale-up to first token (goal < 120s: missed)" in report
    assert total_s(list(result.values())) == pytest.approx(171.4)


def _drop_events(rec: dict[str, Any], reason: str, field: str) -> None:
    rec["events"] = [
        e for e in rec["events"] if not (e["reason"] == reason and e["involvedObject"].get("fieldPath", "") == field)
    ]


def _no_launched(rec):
    rec["nodeclaim"]["status"]["conditions"] = [
        c for c in rec["nodeclaim"]["status"]["conditions"] if c["type"] != "Launched"
    ]


def _no_ready(rec):
    rec["nodeclaim"]["status"]["conditions"] = [
        c for c in rec["nodeclaim"]["status"]["conditions"] if c["type"] != "Initialized"
    ]
    rec["node"] = None


def _no_staging(rec):  # a model without a staging init container (vLLM reading S3 itself)
    rec["pod"]["status"]["initContainerStatuses"] = []
    rec["events"] = [e for e in rec["events"] if e["involvedObject"].get("fieldPath") != STAGE]


def _no_pull(rec):  # the pod's events expired (the API server keeps them an hour by default)
    _drop_events(rec, "Pulling", SERVE)
    _drop_events(rec, "Pulled", SERVE)


def _no_loaded(rec):
    rec["log"] = ""
    rec["pod"]["status"]["conditions"] = []


def _no_token(rec):
    rec["request"]["token"] = None


# One recorded sequence per phase missing: that phase is "not seen"; the others keep their own start
# markers, so their times are the normal ones, except where said.
@pytest.mark.parametrize(
    ("missing", "mutate", "changed"),
    [
        # node ready's start marker is Launched: without it, it runs from the scale-up (0 -> 52 s)
        ("node launched", _no_launched, {"node ready": 52.0}),
        ("node ready", _no_ready, {}),
        ("weights staged", _no_staging, {}),
        ("image pulled", _no_pull, {}),
        ("model loaded", _no_loaded, {}),
        ("first token", _no_token, {}),
    ],
)
def test_one_phase_missing(missing, mutate, changed):
    rec = recorded()
    mutate(rec)
    result = run(rec)
    expected = {**NORMAL, missing: None, **changed}
    assert took(result) == expected
    assert result[missing].note == "not seen" and result[missing].at_s is None
    report = format_report(list(result.values()))
    if missing == "first token":
        assert total_s(list(result.values())) is None
        assert "total: no first token" in report
    else:
        assert total_s(list(result.values())) == pytest.approx(171.4)
    # the missing phase is printed last
    assert report.splitlines()[len(coldstart.PHASES)].startswith(missing)


def test_the_first_token_note_says_how_it_was_timed():
    rec = recorded()
    records = records_from_cluster(rec["pod"], rec["events"], rec["nodeclaim"], rec["node"], rec["log"], "llama")
    records += [
        Record(T0 + timedelta(seconds=171), "Request", "Sent"),
        Record(T0 + timedelta(seconds=172.5), "Request", "FirstToken", message="whole answer (no stream)"),
    ]
    (token,) = [p for p in phases(records, T0) if p.name == "first token"]
    assert (token.took_s, token.note) == (1.5, "whole answer (no stream)")


def test_a_phase_without_its_start_marker_runs_from_the_phase_before():
    rec = recorded()
    _drop_events(rec, "Pulling", SERVE)
    # image pulled: Pulled 10:02:20 - weights staged's end 10:01:14 = 66 s
    assert took(run(rec))["image pulled"] == 66.0


def test_a_retried_pull_counts_from_the_first_pulling():
    rec = recorded()
    rec["events"].append(_event("Pulling", _ts(10, 1, 40), f'Pulling image "{IMAGE}"', SERVE))
    assert took(run(rec))["image pulled"] == 65.0


def test_node_ready_falls_back_to_the_node_without_the_nodeclaim_condition():
    rec = recorded()
    rec["nodeclaim"]["status"]["conditions"] = [
        c for c in rec["nodeclaim"]["status"]["conditions"] if c["type"] != "Initialized"
    ]
    result = run(rec)
    assert result["node ready"].took_s == 39.0  # Launched 10:00:06 -> Node Ready 10:00:45
    assert result["node ready"].note == "Node Ready (no NodeClaim)"


def test_model_loaded_falls_back_to_pod_ready_without_the_triton_line():
    rec = recorded()
    rec["log"] = "2026-12-07T10:02:47.5Z I1207 successfully loaded 'other-model'\n"
    result = run(rec)
    assert result["model loaded"].took_s == 28.0  # started 10:02:22 -> Ready 10:02:50
    assert result["model loaded"].note == "pod Ready (no Triton log line)"


def test_an_image_already_on_the_node_takes_no_pull_time():
    rec = recorded()
    _drop_events(rec, "Pulling", SERVE)
    for e in rec["events"]:
        if e["reason"] == "Pulled" and e["involvedObject"].get("fieldPath") == SERVE:
            e["message"] = f'Container image "{IMAGE}" already present on machine and can be accessed by the pod'
            e["firstTimestamp"] = e["lastTimestamp"] = _ts(10, 1, 15)
    result = run(rec)
    assert result["image pulled"].took_s == 0.0
    assert result["image pulled"].note == "image already on the node"


def test_a_pod_on_a_node_that_was_already_up():
    rec = recorded()
    for cond in rec["nodeclaim"]["status"]["conditions"]:
        cond["lastTransitionTime"] = _ts(9, 30, 0)
    rec["nodeclaim"]["metadata"]["creationTimestamp"] = _ts(9, 29, 0)
    rec["node"] = None
    result = run(rec)
    for name in ("node launched", "node ready"):
        assert (result[name].took_s, result[name].at_s, result[name].note) == (0.0, 0.0, "existing node")
    assert took(result)["weights staged"] == 15.0


def test_reading_the_api_shapes():
    assert coldstart.nominated_nodeclaim(recorded()["events"]) == "g6e-x7k2p"
    assert coldstart.nominated_nodeclaim([]) is None
    assert coldstart.parse_time("2026-12-07T10:02:47.512345678Z") == datetime(
        2026, 12, 7, 10, 2, 47, 512345, tzinfo=UTC
    )
    assert coldstart.parse_time(None) is None
    (loaded,) = coldstart.log_records(recorded()["log"], "llama")
    assert loaded.at == datetime(2026, 12, 7, 10, 2, 47, 512345, tzinfo=UTC)
    assert coldstart.log_records(recorded()["log"], "other") == []
    failed = copy.deepcopy(recorded())
    failed["pod"]["status"]["initContainerStatuses"][0]["state"]["terminated"]["exitCode"] = 1
    assert "weights staged" not in {
        p.name for p in phases(records_from_cluster(failed["pod"], [], None, None, "", "llama"), T0) if p.end
    }


def test_the_command_is_registered_and_refuses_a_model_the_stack_lacks(capsys):
    from tritonllm.__main__ import build_parser, main

    args = build_parser().parse_args(["coldstart", "--stack", "dev", "--model", "no-such-model"])
    assert args.keep is False and args.goal == 120.0
    assert main(["coldstart", "--stack", "dev", "--model", "no-such-model"]) == 2
    assert "has no model 'no-such-model'" in capsys.readouterr().err


# --------------------------------------------------------------------------- the command's shell, on a fake API


class _Obj:
    """A kubernetes-client model: attributes for the command, `raw` for sanitize_for_serialization."""

    def __init__(self, raw: dict[str, Any], **attrs: Any) -> None:
        self.raw = raw
        self.__dict__.update(attrs)


class FakeCluster:
    """What `main` calls on the kubernetes client, answering from the recorded cold start."""

    def __init__(
        self,
        hpa: dict[str, int] | None,
        namespace: str = "llama-3-2-1b",
        replicas: int = 1,
        scaled_object: dict[str, int] | None = None,
    ) -> None:
        self.rec = recorded()
        self.hpa = dict(hpa) if hpa else None
        self.namespace = namespace
        self.replicas = self.start_replicas = replicas
        # A model with minReplicas 0: KEDA's ScaledObject owns the HPA (scaled_object_manifest).
        self.scaled_object = dict(scaled_object) if scaled_object else None
        self.patches: list[tuple[str, dict[str, Any]]] = []

    # kubernetes.client
    def ApiClient(self):  # noqa: N802 - the client's class names
        return self

    def CoreV1Api(self):  # noqa: N802
        return self

    AppsV1Api = AutoscalingV2Api = CustomObjectsApi = CoreV1Api
    ApiException = RuntimeError

    def sanitize_for_serialization(self, obj: Any) -> Any:
        return obj.raw

    # CoreV1Api
    def list_namespaced_pod(self, namespace, label_selector):
        assert namespace == self.namespace and self.namespace in label_selector
        old = [_Obj({}, metadata=_Obj({}, name=f"triton-old-{i}")) for i in range(self.start_replicas)]
        if self.replicas <= self.start_replicas:
            return _Obj({}, items=old)
        return _Obj({}, items=[*old, _Obj(self.rec["pod"], metadata=_Obj({}, name="triton-abc"))])

    def read_namespaced_pod(self, name, namespace):
        return _Obj(self.rec["pod"])

    def list_namespaced_event(self, namespace, field_selector):
        assert field_selector == "involvedObject.name=triton-abc"
        return _Obj({}, items=[_Obj(e) for e in self.rec["events"]])

    def read_node(self, name):
        assert name == "ip-10-0-1-5.ec2.internal"
        return _Obj(self.rec["node"])

    def read_namespaced_pod_log(self, name, namespace, container, timestamps):
        assert (container, timestamps) == ("triton", True)
        return self.rec["log"].replace("'llama'", f"'{self.namespace}'")

    def list_cluster_custom_object(self, group, version, plural):
        assert (group, version, plural) == ("karpenter.sh", "v1", "nodeclaims")
        other = {"metadata": {"name": "cpu-1"}, "status": {"nodeName": "ip-10-0-9-9"}}
        return {"items": [other, self.rec["nodeclaim"]]}

    # AutoscalingV2Api / AppsV1Api
    def read_namespaced_horizontal_pod_autoscaler(self, name, namespace):
        if self.hpa is None:
            raise RuntimeError("404")
        return _Obj({}, spec=_Obj({}, min_replicas=self.hpa["min"], max_replicas=self.hpa["max"]))

    def patch_namespaced_horizontal_pod_autoscaler(self, name, namespace, body):
        self.patches.append(("hpa", body))
        if self.scaled_object is not None:
            # KEDA writes its HPA back (keda v2.20.2 controllers/keda/hpa.go updateHPAIfNeeded), and an HPA
            # does not scale a Deployment at zero replicas: nothing changes.
            return
        self.hpa = {"min": body["spec"]["minReplicas"], "max": body["spec"]["maxReplicas"]}
        self.replicas = max(self.replicas, self.hpa["min"])

    # CustomObjectsApi (KEDA's ScaledObject)
    def get_namespaced_custom_object(self, group, version, namespace, plural, name):
        assert (group, version, namespace, plural, name) == (
            "keda.sh",
            "v1alpha1",
            self.namespace,
            "scaledobjects",
            "triton",
        )
        if self.scaled_object is None:
            raise RuntimeError("404")
        return {"spec": {"minReplicaCount": self.scaled_object["min"], "maxReplicaCount": self.scaled_object["max"]}}

    def patch_namespaced_custom_object(self, group, version, namespace, plural, name, body):
        assert (group, version, namespace, plural, name) == (
            "keda.sh",
            "v1alpha1",
            self.namespace,
            "scaledobjects",
            "triton",
        )
        self.patches.append(("scaledobject", body))
        self.scaled_object = {"min": body["spec"]["minReplicaCount"], "max": body["spec"]["maxReplicaCount"]}
        # Below minReplicaCount KEDA scales the Deployment itself (pkg/scaling/executor/scale_scaledobjects.go).
        self.replicas = max(self.replicas, self.scaled_object["min"])

    def read_namespaced_deployment_scale(self, name, namespace):
        return _Obj({}, spec=_Obj({}, replicas=self.replicas))

    def patch_namespaced_deployment_scale(self, name, namespace, body):
        self.patches.append(("scale", body))
        self.replicas = body["spec"]["replicas"]


@pytest.mark.parametrize("hpa", [{"min": 1, "max": 3}, {"min": 1, "max": 1}, None])
def test_the_command_adds_one_replica_times_it_and_puts_the_floor_back(monkeypatch, capsys, hpa):
    import contextlib
    import sys
    import types

    fake = FakeCluster(hpa)
    module = types.ModuleType("kubernetes")
    module.client = fake
    module.config = types.SimpleNamespace(load_kube_config=lambda context=None: None)
    monkeypatch.setitem(sys.modules, "kubernetes", module)
    clock = [0.0]  # the polling loop's clock: each sleep moves it on
    monkeypatch.setattr(coldstart.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(coldstart.time, "sleep", lambda s: clock.__setitem__(0, clock[0] + s))
    monkeypatch.setattr(coldstart, "datetime", _FrozenDatetime)
    forwarded = []

    @contextlib.contextmanager
    def port_forward(kubectl, namespace, pod, remote, context):
        forwarded.append((namespace, pod, remote))
        yield 12345

    monkeypatch.setattr(coldstart, "port_forward", port_forward)
    monkeypatch.setattr(
        coldstart,
        "first_token",
        lambda model, port, prompt, timeout: (T0 + timedelta(seconds=171), T0 + timedelta(seconds=171.4), ""),
    )
    from tritonllm.__main__ import main

    assert main(["coldstart", "--stack", "dev", "--model", "llama-3-2-1b", "--timeout", "600"]) == 0
    out = capsys.readouterr().out
    assert forwarded == [("llama-3-2-1b", "triton-abc", 8000)]
    if hpa is not None:  # the floor raised by one (the ceiling too when it is reached), then put back
        assert fake.patches == [
            ("hpa", {"spec": {"minReplicas": 2, "maxReplicas": max(hpa["max"], 2)}}),
            ("hpa", {"spec": {"minReplicas": 1, "maxReplicas": hpa["max"]}}),
        ]
    else:
        assert fake.patches == [("scale", {"spec": {"replicas": 2}}), ("scale", {"spec": {"replicas": 1}})]
    assert "pod triton-abc on node ip-10-0-1-5.ec2.internal (NodeClaim g6e-x7k2p)" in out
    assert "total: 171.4s from scale-up to first token (goal < 120s: missed)" in out
    assert "image pulled       +140.0s     65.0s  kubelet: 1m4.9s, 17.0 GB" in out
    assert "node launched        +6.0s      4.0s" in out  # from the pod's NodeClaim, not another one


def test_a_model_that_scales_to_zero_gets_its_scaledobject_floor_raised_not_the_hpa(monkeypatch, capsys):
    """Pulumi.vllm.yaml's mistral-7b-instruct (minReplicas 0), at zero replicas: KEDA owns the HPA, so the
    command raises the ScaledObject's minReplicaCount 0 -> 1 and puts it back; patching the HPA would be
    written back by KEDA and the command would wait for a pod that never comes."""
    import contextlib
    import sys
    import types

    fake = FakeCluster(
        {"min": 1, "max": 4}, namespace="mistral-7b-instruct", replicas=0, scaled_object={"min": 0, "max": 4}
    )
    module = types.ModuleType("kubernetes")
    module.client = fake
    module.config = types.SimpleNamespace(load_kube_config=lambda context=None: None)
    monkeypatch.setitem(sys.modules, "kubernetes", module)
    clock = [0.0]
    monkeypatch.setattr(coldstart.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(coldstart.time, "sleep", lambda s: clock.__setitem__(0, clock[0] + s))
    monkeypatch.setattr(coldstart, "datetime", _FrozenDatetime)

    @contextlib.contextmanager
    def port_forward(kubectl, namespace, pod, remote, context):
        yield 12345

    monkeypatch.setattr(coldstart, "port_forward", port_forward)
    monkeypatch.setattr(
        coldstart,
        "first_token",
        lambda model, port, prompt, timeout: (T0 + timedelta(seconds=171), T0 + timedelta(seconds=171.4), ""),
    )
    from tritonllm.__main__ import main

    assert main(["coldstart", "--stack", "vllm", "--model", "mistral-7b-instruct", "--timeout", "600"]) == 0
    assert fake.patches == [
        ("scaledobject", {"spec": {"minReplicaCount": 1, "maxReplicaCount": 4}}),
        ("scaledobject", {"spec": {"minReplicaCount": 0, "maxReplicaCount": 4}}),
    ]
    out = capsys.readouterr().out
    assert "mistral-7b-instruct/triton 0 -> 1 replicas (scaledobject)" in out
    assert "total: 171.4s from scale-up to first token" in out


def test_the_floor_patches():
    assert coldstart.floor_for("scaledobject", 2, 0, 2) == coldstart.Floor(
        "scaledobject",
        {"spec": {"minReplicaCount": 3, "maxReplicaCount": 3}},
        {"spec": {"minReplicaCount": 0, "maxReplicaCount": 2}},
    )
    assert coldstart.floor_for("deployment", 0).raise_patch == {"spec": {"replicas": 1}}
    with pytest.raises(ValueError):
        coldstart.floor_for("hpa", 1)


class _FrozenDatetime(datetime):
    """coldstart's clock: the scale-up happens at T0."""

    @classmethod
    def now(cls, tz=None):
        return T0
