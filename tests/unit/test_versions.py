"""Issue 17 item 6: one Triton image per serving runtime, and every user of a pin picks its runtime's.

The runtimes moved apart because TensorRT-LLM removed its TensorRT-engine backend and Triton's
inflight_batcher_llm backend (NVIDIA/TensorRT-LLM PRs 15907, 15918) while the LLM API backend and
vLLM moved on: components/catalog/versions.py pins `TRITON_VLLM`, `TRITON_TRTLLM_LLMAPI` and
`TRITON_TRTLLM_ENGINE` separately, and docs/versions.md says which release and why.

Each test below gives the three pins distinct values (or moves one) and checks the program, the
builders and the version facts follow the right one; facts read at an upstream release (metric
names, engine/LLM-API argument lists, the OpenAI frontend's flags) must name the release their
runtime is pinned to, so moving a pin fails here until they are read again.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from components.catalog import serving_metrics, versions, vllm_engine_args
from components.config import llmapi as llmapi_config
from components.providers import engine_build as eb_provider
from components.serving.builders import engine_build as eb
from components.serving.builders import openai as openai_builder
from tests.unit.harness import run_program
from tests.unit.test_triton_manifests import stack_config
from tests.weights_helpers import deployment_manifest, mirror_of

REPO = Path(__file__).resolve().parents[2]
SENTINELS = {
    "TRITON_VLLM_IMAGE": "registry.test/triton:vllm-pin",
    "TRITON_TRTLLM_LLMAPI_IMAGE": "registry.test/triton:llmapi-pin",
    "TRITON_TRTLLM_ENGINE_IMAGE": "registry.test/triton:engine-pin",
}
PIN_OF_RUNTIME = {
    "vllm": "TRITON_VLLM_IMAGE",
    "llmapi": "TRITON_TRTLLM_LLMAPI_IMAGE",
    "engine": "TRITON_TRTLLM_ENGINE_IMAGE",
}


@pytest.fixture
def distinct_pins(monkeypatch):
    for name, value in SENTINELS.items():
        monkeypatch.setattr(versions, name, value)
    return {runtime: SENTINELS[pin] for runtime, pin in PIN_OF_RUNTIME.items()}


def _triton_images(run) -> dict[str, set[str]]:
    """model namespace -> images of its Triton containers (Deployments and LeaderWorkerSets)."""
    images: dict[str, set[str]] = {}
    for deployment in run.manifests("Deployment"):
        for c in deployment["spec"]["template"]["spec"]["containers"]:
            if c["name"] == "triton":
                images.setdefault(deployment["metadata"]["namespace"], set()).add(c["image"])
    for lws in run.manifests("LeaderWorkerSet"):
        template = lws["spec"]["leaderWorkerTemplate"]
        for part in ("leaderTemplate", "workerTemplate"):
            for c in template[part]["spec"]["containers"]:
                images.setdefault(lws["metadata"]["namespace"], set()).add(c["image"])
    return images


def test_the_runtimes_have_their_own_pins():
    assert versions.RUNTIMES == tuple(PIN_OF_RUNTIME)
    for runtime, pin in PIN_OF_RUNTIME.items():
        assert versions.triton_image(runtime) == getattr(versions, pin)
    # What each image carries, from server docs/introduction/compatibility.md at r26.08.
    assert (versions.TRITON_VLLM.release, versions.VLLM_VERSION) == ("26.01", "0.13.0")
    assert (versions.TRITON_TRTLLM_LLMAPI.release, versions.TENSORRT_LLM_LLMAPI_VERSION) == ("26.02", "1.1.0")
    assert (versions.TRITON_TRTLLM_ENGINE.release, versions.TENSORRT_LLM_ENGINE_VERSION) == ("25.12", "1.1.0")
    assert versions.TRITON_VLLM_IMAGE == "nvcr.io/nvidia/tritonserver:26.01-vllm-python-py3"
    assert versions.TRITON_TRTLLM_LLMAPI_IMAGE == "nvcr.io/nvidia/tritonserver:26.02-trtllm-python-py3"
    assert versions.TRITON_TRTLLM_ENGINE_IMAGE == "nvcr.io/nvidia/tritonserver:25.12-trtllm-python-py3"


def test_every_model_pod_runs_its_runtimes_image(distinct_pins):
    # Pulumi.llmapi.yaml: an llmapi model and a vLLM model; Pulumi.multinode.yaml: an engine model
    # over a LeaderWorkerSet; Pulumi.dev.yaml: an engine model in a Deployment.
    for stack in ("llmapi", "multinode", "dev"):
        cfg = stack_config(stack)
        run = run_program(stack)
        images = _triton_images(run)
        assert set(images) == {m.name for m in cfg.models}, stack
        built = {r.inputs["tag"]: r for r in run.of_type("pulumi-python:dynamic/tritonllm:ServingImage")}
        for model in cfg.models:
            if model.multi_node is None:
                assert images[model.name] == {distinct_pins[model.runtime]}, (stack, model.name, model.runtime)
                continue
            # a multi-node model runs the image built on its runtime's pin (images/multinode/Dockerfile)
            (image,) = images[model.name]
            (resource,) = [r for tag, r in built.items() if f":{tag}@" in image]
            assert f"BASE_IMAGE={shlex.quote(distinct_pins[model.runtime])}" in resource.inputs["build_args"]


def test_the_engine_build_job_and_key_follow_the_engine_pin_only(distinct_pins, monkeypatch):
    cfg = stack_config("dev")
    model = cfg.models[0]
    site = cfg.site_of(model)
    resolved = eb_provider.resolve_engine(model, site)
    job = eb.engine_build_job_manifest(
        model,
        site,
        key=resolved.key,
        namespace=model.name,
        bucket="b",
        weights=mirror_of(model, resolved.revision_sha),
        revision_sha=resolved.revision_sha,
    )
    build = job["spec"]["template"]["spec"]["initContainers"][1]
    assert build["image"] == distinct_pins["engine"]
    assert {"name": "TRITON_IMAGE", "value": distinct_pins["engine"]} in build["env"]
    parts = eb.engine_key_parts(model, site, resolved.revision_sha)
    assert parts["image"] == distinct_pins["engine"]
    assert parts["tensorrt_llm_version"] == versions.TENSORRT_LLM_ENGINE_VERSION
    # Moving the llmapi or vLLM image (or the llmapi runtime's TensorRT-LLM) rebuilds no engine.
    monkeypatch.setattr(versions, "TRITON_TRTLLM_LLMAPI_IMAGE", "registry.test/triton:llmapi-moved")
    monkeypatch.setattr(versions, "TRITON_VLLM_IMAGE", "registry.test/triton:vllm-moved")
    monkeypatch.setattr(versions, "TENSORRT_LLM_LLMAPI_VERSION", "9.9.9")
    assert eb.engine_key_parts(model, site, resolved.revision_sha) == parts


def test_the_llmapi_argument_check_names_the_llmapi_runtimes_tensorrt_llm(monkeypatch):
    monkeypatch.setattr(versions, "TENSORRT_LLM_ENGINE_VERSION", "0.0.0-engine")
    problems = llmapi_config.extra_llm_args_problems({"max_batch_szie": 8})
    assert problems and f"TensorRT-LLM {versions.TENSORRT_LLM_LLMAPI_VERSION} " in problems[0]
    assert versions.TRITON_TRTLLM_LLMAPI_IMAGE in problems[0] and "0.0.0-engine" not in problems[0]


# --------------------------------------------------------------------------- facts read at a release


def test_version_facts_were_read_at_the_pinned_releases():
    """Each list or catalog derived from upstream names the release it was read at; it must be the
    release its runtime is pinned to."""
    # LLM() argument names (tensorrt_llm/llmapi/llm_args.py) for the llmapi image's TensorRT-LLM.
    assert llmapi_config.LLM_ARGS_VERSION == versions.TENSORRT_LLM_LLMAPI_VERSION
    # AsyncEngineArgs fields (vllm/engine/arg_utils.py) for the vLLM image's vLLM.
    assert vllm_engine_args.VLLM_ENGINE_ARGS_VERSION == versions.VLLM_VERSION
    # The metric catalog: vllm_backend src/utils/metrics.py and the TRT-LLM backend's gauges.
    assert serving_metrics.VLLM_METRICS_READ_AT == versions.TRITON_VLLM.release
    assert serving_metrics.TRTLLM_METRICS_READ_AT == versions.TRITON_TRTLLM_ENGINE.release
    # The OpenAI frontend runs from the model's own image: its flags were read at that release.
    for runtime in versions.RUNTIMES:
        release = versions.triton_image(runtime).rsplit(":", 1)[1].split("-", 1)[0]
        assert release in openai_builder.FRONTEND_READ_AT, runtime


def test_model_json_keys_are_engine_arguments_of_the_pinned_vllm():
    from components.serving.builders import model_repository as render

    for model in stack_config("vllm").models + [m for m in stack_config("llmapi").models if m.backend == "vllm"]:
        assert set(render.vllm_engine_args(model)) <= vllm_engine_args.VLLM_ENGINE_ARGS, model.name
    assert set(render.MANAGED_VLLM_ARGS) <= vllm_engine_args.VLLM_ENGINE_ARGS


# --------------------------------------------------------------------------- the docs say the same


def _docs_table() -> dict[str, tuple[str, str]]:
    """runtime -> (image, framework version) from the table in docs/versions.md."""
    rows = {}
    for line in (REPO / "docs" / "versions.md").read_text().splitlines():
        m = re.match(r"\|\s*`(vllm|llmapi|engine)`\s*\|\s*`([^`]+)`\s*\|\s*([^|]+?)\s*\|", line)
        if m:
            rows[m.group(1)] = (m.group(2), m.group(3))
    return rows


def test_the_docs_table_shows_the_pins():
    table = _docs_table()
    assert set(table) == set(versions.RUNTIMES)
    facts = {
        "vllm": versions.TRITON_VLLM,
        "llmapi": versions.TRITON_TRTLLM_LLMAPI,
        "engine": versions.TRITON_TRTLLM_ENGINE,
    }
    for runtime, pin in facts.items():
        assert table[runtime] == (pin.image, f"{pin.framework} {pin.framework_version}"), runtime
    readme = (REPO / "README.md").read_text()
    assert "(docs/versions.md)" in readme


def test_the_vllm_deployment_and_openai_frontend_use_the_vllm_image(distinct_pins):
    cfg = stack_config("vllm", openai={"enabled": True})
    model = cfg.models[0]
    manifest = deployment_manifest(model, cfg.site_of(model), bucket="b")
    triton = manifest["spec"]["template"]["spec"]["containers"][0]
    assert triton["image"] == distinct_pins["vllm"]
    # vLLM in OpenAI mode runs main.py through the explicit-model-control launcher (issue 17 item 2)
    assert triton["command"][:4] == ["python3", "-c", openai_builder.LAUNCHER, openai_builder.FRONTEND_MAIN]
