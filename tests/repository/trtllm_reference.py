"""Upstream TensorRT-LLM Triton templates (reference data, trtllm-templates/) as the build Job sees them.

`make_app(tmp, template_set)` lays out an `/app` like the one in the Triton TRT-LLM image
(`all_models/inflight_batcher_llm/<model>/`, `tools/fill_template.py`) from the unmodified upstream
files, so tests run model_repository/trtllm/build_engine.py's own fill code path against them.

Template sets (reference/manifest.toml names each file's upstream commit):
- "v0.19.0": triton-inference-server/tensorrtllm_backend tag v0.19.0, one coherent tagged set.
- "1.x": the newest file of each kind in the reference, all from NVIDIA/TensorRT-LLM
  `triton_backend/` after the move (ensemble + tensorrt_llm configs and fill_template.py from
  2a9abd95, preprocessing config 808059da + model.py beb339f5, postprocessing config 89fd9b74 +
  model.py 2e2327b9, tensorrt_llm_bls config bff88ea8). This is the generation the pinned image
  (Triton 25.12, TensorRT-LLM 1.1.0) ships, and the one where `prompt_embedding_table` became a
  `${prompt_embedding_table_data_type}` placeholder in tensorrt_llm while the ensemble keeps
  TYPE_FP16 (v0.19.0 hard-codes TYPE_FP16 in both, so it cannot show that defect). Its files
  come from different commits; the ensemble check in the tests is what shows they fit together.
  The BLS model's Python files are only in v0.19.0 and are taken from there. Version directories
  hold only the upstream Python files (no `.tmp`/`.gitkeep` placeholders): the worst case for
  "every version directory holds a file".

Tests that need these skip with the reason when the reference folder is absent.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.k8s_schema import HOW_TO_GET, REFERENCE_DIR, require_reference_dir

TEMPLATES_DIR = REFERENCE_DIR / "trtllm-templates"
V019 = "tensorrtllm_backend-v0.19.0"
MODELS = ("ensemble", "preprocessing", "tensorrt_llm", "postprocessing", "tensorrt_llm_bls")
TEMPLATE_SETS = ("1.x", "v0.19.0")

# model -> (config.pbtxt source folder, [(file under the model dir, source folder)])
_NEWER = {
    "ensemble": ("TensorRT-LLM-2a9abd95", []),
    "tensorrt_llm": ("TensorRT-LLM-2a9abd95", []),
    "preprocessing": ("TensorRT-LLM-808059da", [("1/model.py", "TensorRT-LLM-beb339f5")]),
    "postprocessing": ("TensorRT-LLM-89fd9b74", [("1/model.py", "TensorRT-LLM-2e2327b9")]),
    "tensorrt_llm_bls": (
        "TensorRT-LLM-bff88ea8",
        [("1/model.py", V019), ("1/lib/decode.py", V019), ("1/lib/triton_decoder.py", V019)],
    ),
}


def templates_dir() -> Path:
    require_reference_dir()
    if not TEMPLATES_DIR.is_dir():
        import pytest

        pytest.skip(f"upstream TensorRT-LLM templates not found at {TEMPLATES_DIR} ({HOW_TO_GET})")
    return TEMPLATES_DIR


def _model_src(folder: str, model: str) -> Path:
    return templates_dir() / folder / "inflight_batcher_llm" / model


def make_app(root: Path, template_set: str) -> Path:
    """An /app directory with the upstream templates of `template_set` and their fill_template.py."""
    app = root / "app"
    models = app / "all_models" / "inflight_batcher_llm"
    if template_set == "v0.19.0":
        shutil.copytree(templates_dir() / V019 / "inflight_batcher_llm", models)
        tools = templates_dir() / V019 / "tools"
    elif template_set == "1.x":
        for model, (config_from, files) in _NEWER.items():
            (models / model).mkdir(parents=True)
            shutil.copy2(_model_src(config_from, model) / "config.pbtxt", models / model / "config.pbtxt")
            for rel, folder in files:
                (models / model / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(_model_src(folder, model) / rel, models / model / rel)
        tools = templates_dir() / "TensorRT-LLM-2a9abd95" / "tools"
    else:
        raise ValueError(template_set)
    shutil.copytree(tools, app / "tools")
    return app


def bls_lib_dir() -> Path:
    return _model_src(V019, "tensorrt_llm_bls") / "1"
