"""Issue 17 item 1: Triton's OpenAI frontend accepts the model repository our OpenAI-mode pods give it.

While main.py builds its engine, TritonLLMEngine._get_model_metadata calls
`_parse_lora_configs(server.options.model_repository, name, version, backend)` for every model
(triton-inference-server/server r25.12 python/openai/openai_frontend/engine/triton_engine.py,
line 509), and that function refuses a path that `os.path.normpath` changes ("Invalid model name",
engine/utils/triton.py line 618 ff.). `s3://bucket/models/x/x` normalises to `s3:/bucket/...`, so
a vLLM model whose repository is in S3 made the frontend exit at start, over and over.

The check runs on the `--model-repository` of every OpenAI-mode pod the stacks render: upstream's
own function when the reference folder holds engine/utils/triton.py at r25.12 (tests/upstream_code.py),
otherwise the port below of its path checks. A staged copy laid out as the init container syncs it
then goes through the same function (vLLM: the model.json it reads for `enable_lora`).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from components.config import parse_stack_config
from components.serving.builders import openai as openai_frontend
from components.serving.builders import triton_manifests as tm
from components.serving.builders.model_repository import models_prefix, vllm_model_files
from tests.unit.harness import load_stack_config
from tests.upstream_code import function_from_source, reference_file
from tests.weights_helpers import deployment_manifest

UPSTREAM_TRITON_PY = "triton-openai/server-r25.12/python/openai/openai_frontend/engine/utils/triton.py"
BUCKET = "tritonllm-llmapi-models"


class ServerError(Exception):
    """utils/utils.py ServerError (what upstream raises for a broken LoRA list)."""


@dataclass
class TritonLoraConfig:
    """engine/utils/triton.py r25.12 TritonLoraConfig (line 58)."""

    name: str
    task_id: int | None = None
    path: str | None = None
    is_registered: bool | None = False


def ported_path_checks(model_repository: str | list[str], model_name: str) -> None:
    """The name and path checks of `_parse_lora_configs` (server r25.12
    python/openai/openai_frontend/engine/utils/triton.py, lines 618-648), ported: they run before
    the function looks at the disk, for every model of the repository."""
    if len(model_name) == 0 or model_name.isspace() or "/" in model_name or "\\" in model_name:
        raise ValueError(
            f"Invalid model name: '{model_name}'. Model names must be valid file-system-path segment names."
        )
    repo_paths = [model_repository] if isinstance(model_repository, str) else model_repository
    for repo_path in repo_paths:
        model_path = os.path.join(repo_path, model_name)
        if (not Path(model_path).is_relative_to(repo_path)) or (os.path.normpath(model_path) != model_path):
            raise ValueError(
                f"Invalid model name: '{model_name}'. Model names must be valid file-system-path segment names."
            )


def upstream_parse_lora_configs():
    path = reference_file(UPSTREAM_TRITON_PY)
    if path is None:
        return None
    import json
    import traceback

    namespace = {
        "os": os,
        "re": re,
        "json": json,
        "traceback": traceback,
        "Path": Path,
        "List": list,
        "TritonLoraConfig": TritonLoraConfig,
        "ServerError": ServerError,
    }
    return function_from_source(path, "_parse_lora_configs", namespace)


def frontend_accepts(model_repository: str, model_name: str, backend: str) -> None:
    """Raise as the frontend would at start for this repository path and model."""
    upstream = upstream_parse_lora_configs()
    if upstream is not None:
        upstream(model_repository, model_name, -1, backend)
    else:
        ported_path_checks(model_repository, model_name)


def main_args(command: list[str]) -> list[str]:
    """The arguments main.py gets, whether the command runs it directly or through the launcher."""
    if command[:2] == ["python3", "-c"]:
        assert command[2] == openai_frontend.LAUNCHER and command[3] == openai_frontend.FRONTEND_MAIN
        return command[5:]
    assert command[:2] == ["python3", openai_frontend.FRONTEND_MAIN]
    return command[2:]


def flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def openai_models():
    """(stack, model, site) of every OpenAI-mode model of the stacks, and the vLLM stack's first
    model and the dev stack's TRT-LLM model with the switch on."""
    found = []
    for stack, override in (("llmapi", None), ("vllm", 0), ("dev", 0)):
        raw = {k.split(":", 1)[1]: v for k, v in load_stack_config(stack).items() if k.startswith("tritonllm:")}
        if override is not None:
            raw["models"][override] = {**raw["models"][override], "openai": {"enabled": True}}
        cfg = parse_stack_config(raw, {"hfToken"})
        found += [(stack, m, cfg.site_of(m)) for m in cfg.models if m.openai.enabled]
    return found


CASES = openai_models()


def test_the_llmapi_stack_serves_vllm_through_the_frontend():
    """Precondition: the stack the issue names deploys exactly this (vLLM + openai.enabled)."""
    assert any(stack == "llmapi" and m.backend == "vllm" for stack, m, _ in CASES)


@pytest.mark.parametrize("stack,model,site", CASES, ids=[f"{s}-{m.name}" for s, m, _ in CASES])
def test_the_frontend_accepts_the_repository_path(stack, model, site):
    manifest = deployment_manifest(model, site, bucket=BUCKET, engine_key="0" * 64, shared_claim_name=tm.SHARED_CLAIM)
    triton = manifest["spec"]["template"]["spec"]["containers"][0]
    repository = flag(main_args(triton["command"]), "--model-repository")
    backend = "vllm" if model.backend == "vllm" else "tensorrtllm"
    frontend_accepts(repository, model.name, backend)
    # ...and the path is on a volume of the pod (not a remote store the frontend cannot list).
    mounts = {m["mountPath"] for m in triton["volumeMounts"]}
    assert any(repository == m or repository.startswith(m.rstrip("/") + "/") for m in mounts), (repository, mounts)


def test_an_s3_repository_is_what_the_frontend_refuses():
    """The defect itself, on upstream's check: the S3 URI vLLM pods use without the frontend."""
    stack, model, site = next(c for c in CASES if c[1].backend == "vllm")
    with pytest.raises(ValueError, match="Invalid model name"):
        frontend_accepts(tm.vllm_repository_uri(BUCKET, model), model.name, "vllm")


def test_the_staged_copy_is_the_uploaded_repository(tmp_path):
    """The init container copies exactly the prefix the ModelRepository uploads to the path main.py
    is given; emulated here on disk, the copy passes the whole upstream function (it reads model.json)."""
    stack, model, site = next(c for c in CASES if c[1].backend == "vllm")
    manifest = deployment_manifest(model, site, bucket=BUCKET, shared_claim_name=tm.SHARED_CLAIM)
    spec = manifest["spec"]["template"]["spec"]
    stage = next(c for c in spec["initContainers"] if c["name"] == "stage-repository")
    repository = flag(main_args(spec["containers"][0]["command"]), "--model-repository")
    sync = next(shlex.split(line) for line in stage["command"][-1].splitlines() if line.startswith("aws s3 sync"))
    source, destination = sync[3], sync[4]
    assert source == f"s3://{BUCKET}/{models_prefix(model)}"
    assert destination.rstrip("/") == repository
    # the staged repository, and the writable /tmp of a read-only root filesystem (pod security)
    assert {m["mountPath"] for m in stage["volumeMounts"]} == {tm.STAGE_DIR, "/tmp"}
    # `aws s3 sync` of the uploaded files, on disk: the bucket prefix holds vllm_model_files(model).
    bucket_prefix = tmp_path / "bucket" / models_prefix(model)
    for rel, text in vllm_model_files(model).items():
        (bucket_prefix / rel).parent.mkdir(parents=True, exist_ok=True)
        (bucket_prefix / rel).write_text(text)
    staged = tmp_path / repository.lstrip("/")
    shutil.copytree(bucket_prefix, staged)
    assert (staged / model.name / "config.pbtxt").is_file()
    upstream = upstream_parse_lora_configs()
    if upstream is not None:
        assert upstream(str(staged), model.name, -1, "vllm") == []  # no LoRA: an empty list, no error
    else:
        ported_path_checks(str(staged), model.name)
