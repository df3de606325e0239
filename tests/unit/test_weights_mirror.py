"""The weights mirror (issue 20): its key and skip behaviour like the engine cache (every input varied;
unchanged = no work), the Job (token only there, as a file; restricted), the provider's wait, and every
runtime reading the mirror with no Hugging Face token in a serving pod.

The S3 path for real (download, upload, skip, stage against moto) is tests/providers/test_weights_mirror_moto.py.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from functools import partial
from typing import Any

import pytest

from components.catalog import versions
from components.config import ConfigError
from components.providers import engine_build as eb_provider
from components.providers import weights_mirror as provider
from components.serving.builders import engine_build
from components.serving.builders import triton_manifests as tm
from components.serving.builders import weights_mirror as wm
from components.serving.builders.llmapi import llm_args
from components.serving.builders.model_repository import vllm_engine_args
from tests.k8s_schema import validate_k8s_object
from tests.unit.test_triton_manifests import stack_config

COMMIT = "1111111111111111111111111111111111111111"
OTHER = "2222222222222222222222222222222222222222"


# --------------------------------------------------------------------------- key and prefix


def test_the_key_is_stable_and_every_input_changes_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    base = wm.resolved_mirror("acme/model", COMMIT)
    assert wm.resolved_mirror("acme/model", COMMIT) == base  # unchanged inputs: the same key
    assert json.loads(json.dumps(base.parts)) == base.parts  # the key is over plain JSON
    variants = {
        "model id": wm.resolved_mirror("acme/other", COMMIT).key,
        "commit": wm.resolved_mirror("acme/model", OTHER).key,
    }
    for name, value in {
        "allow patterns": ("ALLOW_PATTERNS", (*wm.ALLOW_PATTERNS, "*.gguf")),
        "ignore patterns": ("IGNORE_PATTERNS", wm.IGNORE_PATTERNS[:-1]),
        "layout version": ("MIRROR_LAYOUT_VERSION", wm.MIRROR_LAYOUT_VERSION + 1),
    }.items():
        with monkeypatch.context() as mp:
            mp.setattr(wm, value[0], value[1])
            variants[name] = wm.resolved_mirror("acme/model", COMMIT).key
    script = tmp_path / "mirror_snapshot.py"
    script.write_text(wm.MIRROR_SCRIPT.read_text() + "\n# changed\n")
    with monkeypatch.context() as mp:
        mp.setattr(wm, "MIRROR_SCRIPT", script)
        variants["download script"] = wm.resolved_mirror("acme/model", COMMIT).key
    assert base.key not in variants.values(), [k for k, v in variants.items() if v == base.key]
    assert len(set(variants.values())) == len(variants)


def test_the_mirror_keeps_what_vllm_picks_its_tokenizer_by() -> None:
    """vLLM 0.13.0 chooses mistral_common's tokenizer (tokenizer_mode auto) when the model directory has
    tekken.json or tokenizer.model.v* (vllm/tokenizers/registry.py resolve_tokenizer_args), and
    transformers' MistralCommonTokenizer reads the version from that suffix: a mirror without them
    serves another tokenizer than vLLM would online. Filtered by huggingface_hub's own function, as
    snapshot_download filters (Mistral-7B-Instruct-v0.3's file list, plus a tekken repository's)."""
    from huggingface_hub.utils import filter_repo_objects

    repo = [
        "config.json",
        "params.json",
        "generation_config.json",
        "consolidated.safetensors",
        "model-00001-of-00003.safetensors",
        "model.safetensors.index.json",
        "tokenizer.json",
        "tokenizer.model",
        "tokenizer.model.v3",
        "tokenizer.model.v7m1",
        "tokenizer_config.json",
        "tekken.json",
        "original/consolidated.00.pth",
    ]
    kept = set(
        filter_repo_objects(repo, allow_patterns=list(wm.ALLOW_PATTERNS), ignore_patterns=list(wm.IGNORE_PATTERNS))
    )
    for tokenizer_file in (
        "tekken.json",
        "tokenizer.model.v3",
        "tokenizer.model.v7m1",
        "tokenizer.model",
        "tokenizer.json",
    ):
        assert tokenizer_file in kept
    assert "original/consolidated.00.pth" not in kept


def test_prefix_names_repository_and_commit_and_refuses_a_branch() -> None:
    mirror = wm.resolved_mirror("meta-llama/Llama-3.1-8B-Instruct", COMMIT)
    assert mirror.prefix == f"hf-mirror/meta-llama/Llama-3.1-8B-Instruct/{COMMIT}/"
    assert wm.resource_name(mirror) == "hf-mirror-meta-llama-llama-3-1-8b-instruct-111111111111"
    with pytest.raises(ValueError, match="not a 40-character commit sha"):
        wm.resolved_mirror("acme/model", "main")


def test_resolve_mirrors_follows_a_moved_branch_and_names_the_key_on_failure() -> None:
    from tests import hf_api

    cfg = stack_config("vllm")
    fake = eb_provider.http_get_json
    assert isinstance(fake, hf_api.FakeHfApi)
    before = provider.resolve_mirrors(cfg, None)
    model = cfg.models[0]
    assert before[model.name].revision_sha == fake.sha_for(model.hf_model_id, model.hf_revision)
    eb_provider._resolve.cache_clear()
    fake.moves += 1
    try:
        after = provider.resolve_mirrors(cfg, None)
        assert after[model.name].key != before[model.name].key  # the branch moved: new commit, new key
        eb_provider._resolve.cache_clear()
        fake.fail_with = OSError("no route to host")
        with pytest.raises(ConfigError, match=r"models\[0\]\.hfRevision"):
            provider.resolve_mirrors(cfg, None)
    finally:
        fake.moves -= 1
        fake.fail_with = None
        eb_provider._resolve.cache_clear()


def test_two_models_of_one_snapshot_share_one_mirror() -> None:
    cfg = stack_config("vllm")
    model = cfg.models[0]
    twin = model.model_copy(update={"name": "twin"})
    mirror = wm.resolved_mirror(model.hf_model_id, COMMIT)
    shared = wm.mirrors_by_key([model, twin], {model.name: mirror, twin.name: mirror})
    assert list(shared) == [mirror.key] and shared[mirror.key][1] is model
    moved = wm.resolved_mirror(model.hf_model_id, OTHER)
    assert len(wm.mirrors_by_key([model, twin], {model.name: mirror, twin.name: moved})) == 2


# --------------------------------------------------------------------------- the provider's skip and wait


class MemoryStore:
    def __init__(self, objects: dict[str, str] | None = None):
        self.objects = dict(objects or {})
        self.deleted: list[str] = []

    def read_text(self, bucket: str, key: str) -> str | None:
        return self.objects.get(key)

    def delete_prefix(self, bucket: str, prefix: str) -> int:
        self.deleted.append(prefix)
        return 0


class FakeJobs:
    def __init__(self, statuses: list[dict[str, Any]], on_success: Any = None, logs: str = ""):
        self.statuses, self.on_success, self.logs = list(statuses), on_success, logs
        self.calls: list[str] = []

    def apply_config_map(self, manifest: dict[str, Any]) -> None:
        self.calls.append("apply_config_map")

    def create_job(self, manifest: dict[str, Any]) -> bool:
        self.calls.append("create_job")
        return True

    def job_status(self, namespace: str, name: str) -> dict[str, Any]:
        status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        if status.get("succeeded") and self.on_success:
            self.on_success()
        return status

    def job_log_tail(self, namespace: str, name: str, lines: int) -> str:
        return self.logs

    def delete_job(self, namespace: str, name: str) -> None:
        self.calls.append("delete_job")

    def delete_config_map(self, namespace: str, name: str) -> None:
        self.calls.append("delete_config_map")


def props_for(mirror: wm.ResolvedMirror) -> dict[str, Any]:
    model = stack_config("vllm").models[0]
    return {
        "bucket": "b",
        "key": mirror.key,
        "prefix": mirror.prefix,
        "hf_model_id": mirror.hf_model_id,
        "hf_commit": mirror.revision_sha,
        "timeout_seconds": 600,
        "job": wm.mirror_job_manifest(mirror, model, bucket="b", region="us-east-1", timeout_minutes=10),
        "script_config_map": wm.script_configmap_manifest(mirror),
    }


def constant(jobs: FakeJobs) -> Any:
    return lambda: jobs


COMPLETE = {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}
FAILED = {"failed": 1, "conditions": [{"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}]}


def test_unchanged_commit_is_no_work_and_a_new_key_runs_the_job() -> None:
    mirror = wm.resolved_mirror("acme/model", COMMIT)
    done = MemoryStore({mirror.prefix + wm.COMPLETE_MARKER: mirror.key + "\n"})

    def no_jobs() -> Any:
        raise AssertionError("no Job may run when the marker holds the key")

    assert provider.ensure_mirror(props_for(mirror), no_jobs, done).copied is False

    # Missing marker, or one holding another key (patterns changed, an older layout): copy.
    for objects in ({}, {mirror.prefix + wm.COMPLETE_MARKER: "f" * 64}):
        store = MemoryStore(objects)
        marker = {mirror.prefix + wm.COMPLETE_MARKER: mirror.key}
        jobs = FakeJobs([{"active": 1}, COMPLETE], on_success=partial(store.objects.update, marker))
        result = provider.ensure_mirror(props_for(mirror), constant(jobs), store, sleep=lambda s: None)
        assert result.copied is True
        assert jobs.calls == ["apply_config_map", "create_job", "delete_job", "delete_config_map"]


def test_a_failed_job_reports_its_logs_and_stays() -> None:
    mirror = wm.resolved_mirror("acme/model", COMMIT)
    jobs = FakeJobs([FAILED], logs="Hugging Face answered HTTP 401")
    with pytest.raises(provider.MirrorError, match="DeadlineExceeded(.|\n)*HTTP 401"):
        provider.ensure_mirror(props_for(mirror), lambda: jobs, MemoryStore(), sleep=lambda s: None)
    assert "delete_job" not in jobs.calls  # kept for `kubectl logs`


def test_a_succeeded_job_without_the_marker_is_an_error() -> None:
    mirror = wm.resolved_mirror("acme/model", COMMIT)
    jobs = FakeJobs([COMPLETE])
    with pytest.raises(provider.MirrorError, match="does not hold key"):
        provider.ensure_mirror(props_for(mirror), lambda: jobs, MemoryStore(), sleep=lambda s: None)


def test_diff_replaces_on_key_bucket_or_prefix_only() -> None:
    olds = {"key": "k", "bucket": "b", "prefix": "p", "timeout_seconds": 1}
    assert provider.mirror_diff(olds, {**olds, "timeout_seconds": 2}) == (False, [])
    for field in ("key", "bucket", "prefix"):
        assert provider.mirror_diff(olds, {**olds, field: "x"}) == (True, [field])


# --------------------------------------------------------------------------- the Job


def test_the_job_holds_the_token_as_a_file_in_the_download_container_only() -> None:
    model = stack_config("vllm").models[0]
    mirror = wm.resolved_mirror(model.hf_model_id, COMMIT)
    job = wm.mirror_job_manifest(
        mirror, model, bucket="b", region="us-west-2", timeout_minutes=30, hf_token_secret=wm.MIRROR_HF_TOKEN_SECRET
    )
    validate_k8s_object(job)
    pod = job["spec"]["template"]["spec"]
    download, upload = pod["initContainers"][0], pod["containers"][0]
    assert job["metadata"]["namespace"] == wm.MIRROR_NAMESPACE
    assert job["spec"]["activeDeadlineSeconds"] == 30 * 60
    assert {e["name"]: e.get("value") for e in download["env"]}[
        "HF_TOKEN_PATH"
    ] == "/var/run/secrets/huggingface/HF_TOKEN"
    assert not any(e["name"] == "HF_TOKEN" for c in (download, upload) for e in c["env"])
    assert not any(m["name"] == "hf-token" for m in upload["volumeMounts"])
    assert download["command"][2:] == wm.download_args(mirror)
    assert f"s3://b/{mirror.prefix}" in upload["command"][2]
    # No GPU: the download needs none; the model's pool, so the node and its image serve the first replica.
    assert "nvidia.com/gpu" not in json.dumps(pod["initContainers"] + pod["containers"])
    # ...and sees none: the NGC image's NVIDIA_VISIBLE_DEVICES=all would hand it the node's GPUs.
    assert {e["name"]: e.get("value") for e in download["env"]}["NVIDIA_VISIBLE_DEVICES"] == "void"
    assert pod["nodeSelector"] == {"karpenter.sh/nodepool": model.node_pool}
    for c in (download, upload):
        assert c["securityContext"]["runAsNonRoot"] is True or pod["securityContext"]["runAsNonRoot"] is True
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
    public = wm.mirror_job_manifest(mirror, model, bucket="b", region="us-west-2", timeout_minutes=30)
    assert "hf-token" not in json.dumps(public)


# --------------------------------------------------------------------------- every runtime reads the mirror


def _all_env_and_volumes(manifest: dict[str, Any]) -> str:
    return json.dumps(manifest["spec"]["template"]["spec"])


@pytest.mark.parametrize("stack", ["vllm", "llmapi"])
def test_vllm_and_llmapi_pods_stage_the_mirror_and_hold_no_token(stack: str) -> None:
    cfg = stack_config(stack)
    model = cfg.models[0]
    mirror = wm.resolved_mirror(model.hf_model_id, COMMIT)
    manifest = tm.deployment_manifest(model, cfg.site_of(model), bucket="b", weights=mirror)
    validate_k8s_object(manifest)
    pod = manifest["spec"]["template"]["spec"]
    stage = pod["initContainers"][0]
    assert stage["name"] == "stage-weights"
    assert f"s3://b/{mirror.prefix}" in stage["command"][2]
    triton = next(c for c in pod["containers"] if c["name"] == "triton")
    env = {e["name"]: e.get("value") for e in triton["env"]}
    assert env["HF_HUB_OFFLINE"] == "1"
    assert {"mountPath": wm.WEIGHTS_DIR, "name": tm.WEIGHTS_VOLUME, "readOnly": True} in triton["volumeMounts"]
    assert {"name": tm.WEIGHTS_VOLUME, "emptyDir": {}} in pod["volumes"]
    text = _all_env_and_volumes(manifest)
    assert "HF_TOKEN" not in text and "hf-token" not in text
    annotations = manifest["spec"]["template"]["metadata"]["annotations"]
    assert annotations["tritonllm.io/weights"] == f"{model.hf_model_id}@{COMMIT}"
    with pytest.raises(ValueError, match="reads its weights from the mirror"):
        tm.deployment_manifest(model, cfg.site_of(model), bucket="b")


def test_runtime_arguments_name_the_staged_directory() -> None:
    vllm = stack_config("vllm").models[0]
    args = vllm_engine_args(vllm)
    assert args["model"] == wm.WEIGHTS_DIR
    assert not {"revision", "tokenizer_revision", "tokenizer"} & set(args)
    llmapi = stack_config("llmapi").models[0]
    largs = llm_args(llmapi)
    assert largs["model"] == wm.WEIGHTS_DIR
    assert not {"revision", "tokenizer_revision"} & set(largs)


def test_the_engine_build_stages_the_mirror_and_holds_no_token() -> None:
    cfg = stack_config("dev")
    model = cfg.models[0]
    mirror = wm.resolved_mirror(model.hf_model_id, COMMIT)
    key = engine_build.engine_cache_key(engine_build.engine_key_parts(model, cfg.site_of(model), COMMIT))
    job = engine_build.engine_build_job_manifest(
        model, cfg.site_of(model), key=key, namespace="ns", bucket="b", weights=mirror, revision_sha=COMMIT
    )
    validate_k8s_object(job)
    pod = job["spec"]["template"]["spec"]
    stage, build = pod["initContainers"]
    assert stage["name"] == "stage-weights" and build["name"] == "build"
    assert {"name": "work", "mountPath": engine_build.WEIGHTS_STAGE_DIR, "subPath": "hf"} == stage["volumeMounts"][0]
    assert build["command"][build["command"].index("--weights-dir") + 1] == engine_build.WEIGHTS_STAGE_DIR
    assert "HF_TOKEN" not in json.dumps(pod) and "hf-token" not in json.dumps(pod)
    assert {e["name"]: e.get("value") for e in build["env"]}["HF_HUB_OFFLINE"] == "1"


def test_reader_policies_add_exactly_the_models_mirror_prefix() -> None:
    arn = "arn:aws:s3:::b"
    vllm = stack_config("vllm").models[0]
    prefix = wm.resolved_mirror(vllm.hf_model_id, COMMIT).prefix
    doc = tm.triton_reader_policy(vllm, arn, "models/x/", weights_prefix=prefix)
    reads = [s["Resource"] for s in doc["Statement"] if s["Action"] == ["s3:GetObject"]]
    assert reads == [[f"{arn}/models/x/*"], [f"{arn}/{prefix}*"]]
    assert len({s["Sid"] for s in doc["Statement"]}) == len(doc["Statement"])
    llmapi = stack_config("llmapi").models[0]
    only = tm.triton_reader_policy(llmapi, arn, "", weights_prefix=prefix)
    assert [s["Resource"] for s in only["Statement"] if s["Action"] == ["s3:GetObject"]] == [[f"{arn}/{prefix}*"]]


# --------------------------------------------------------------------------- the AWS CLI's transfer client

AWS_CALL = re.compile(r"(^|[\s;(|&`])aws\s")


def _aws_cli_containers() -> list[tuple[str, dict[str, Any]]]:
    """Every AWS CLI container the weights path renders: the mirror Job's upload, the vLLM and llmapi pods'
    staging (stage and mountpoint), the engine build Job's staging and upload, the engine pod's staging."""
    manifests: list[tuple[str, dict[str, Any]]] = []
    for stack in ("vllm", "llmapi"):
        cfg = stack_config(stack)
        model = cfg.models[0]
        mirror = wm.resolved_mirror(model.hf_model_id, COMMIT)
        manifests.append(
            (f"{stack} mirror Job", wm.mirror_job_manifest(mirror, model, bucket="b", region="r", timeout_minutes=5))
        )
        manifests.append(
            (f"{stack} pod", tm.deployment_manifest(model, cfg.site_of(model), bucket="b", weights=mirror))
        )
    dev = stack_config("dev")
    model = dev.models[0]
    mirror = wm.resolved_mirror(model.hf_model_id, COMMIT)
    key = "e" * 64
    manifests.append(
        (
            "engine build Job",
            engine_build.engine_build_job_manifest(
                model, dev.site_of(model), key=key, namespace="ns", bucket="b", weights=mirror, revision_sha=COMMIT
            ),
        )
    )
    manifests.append(("engine pod", tm.deployment_manifest(model, dev.site_of(model), bucket="b", engine_key=key)))
    out = []
    for where, manifest in manifests:
        pod = manifest["spec"]["template"]["spec"]
        for c in pod.get("initContainers", []) + pod["containers"]:
            if c["image"] == versions.AWS_CLI_IMAGE:
                out.append((f"{where} {c['name']}", c))
    return out


def _config_at_first_aws_call(command: str, tmp_path: Any) -> dict[str, Any] | None:
    """The AWS CLI config the container's first `aws` call reads: the shell up to the last
    `export AWS_CONFIG_FILE=` before it, run for real, the file parsed as the CLI parses it (botocore's
    configloader, nested `s3 =` values included)."""
    from botocore.configloader import raw_config_parse

    lines = command.split("\n")
    first_call = next((i for i, line in enumerate(lines) if AWS_CALL.search(line)), None)
    if first_call is None:
        return None
    exports = [i for i, line in enumerate(lines[:first_call]) if line.startswith("export AWS_CONFIG_FILE=")]
    assert exports, "an aws call before any AWS_CONFIG_FILE: the CLI's defaults apply"
    script = "\n".join([*lines[: exports[-1] + 1], 'cp "$AWS_CONFIG_FILE" "$TMPDIR/effective.cfg"'])
    subprocess.run(["/bin/sh", "-c", script], env={"PATH": os.environ["PATH"], "TMPDIR": str(tmp_path)}, check=True)
    return raw_config_parse(str(tmp_path / "effective.cfg"))


def test_every_aws_cli_container_uses_the_classic_transfer_client(tmp_path: Any) -> None:
    """AWS CLI v2's default transfer client `auto` is the CRT client on p4d/p4de/p5/trn1 (aws-cli
    awscli/topics/s3-config.rst "preferred_transfer_client"), which ignores max_concurrent_requests and
    sizes its buffers from the instance's bandwidth; our containers have 2 GiB. Each container's first
    `aws` call must read a config naming `classic`; the weights copies also their 32 requests x 16 MB."""
    containers = _aws_cli_containers()
    checked = 0
    for i, (where, container) in enumerate(containers):
        work = tmp_path / str(i)
        work.mkdir()
        config = _config_at_first_aws_call(container["command"][2], work)
        if config is None:
            continue  # no aws call (the Mountpoint check reads the volume with cat)
        s3 = config["default"]["s3"]
        assert s3["preferred_transfer_client"] == "classic", where
        if "weights" in container["name"] or where.endswith("mirror Job upload"):
            assert s3["max_concurrent_requests"] == str(wm.S3_MAX_CONCURRENT_REQUESTS), where
            assert s3["multipart_chunksize"] == wm.S3_MULTIPART_CHUNKSIZE, where
        checked += 1
    assert checked >= 6, [w for w, _ in containers]
