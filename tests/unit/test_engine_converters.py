"""Issue 17 item 3: every checkpoint converter takes the arguments the engine build gives it.

model_repository/trtllm/build_engine.py runs `examples/models/core/<family>/convert_checkpoint.py`
of the TensorRT-LLM inside the pinned image (versions.TENSORRT_LLM_ENGINE_VERSION). Each family's script
has its own argparse: Gemma's takes `--ckpt-type --model-dir --output-model-dir --world-size` and no
pipeline parallelism, Phi's asserts `pp_size == 1`. Passing every converter the Llama-style list
made Gemma exit 2 on `--tp_size` ("unrecognized arguments") before converting anything.

Here the build script's own convert_command() is parsed by the converter's parser:

* upstream's parse_arguments() itself, when the reference folder holds the script at
  `trtllm-convert/TensorRT-LLM-v<version>/examples/models/core/<family>/convert_checkpoint.py`
  (tests/upstream_code.py runs it with its TensorRT-LLM/transformers imports stubbed);
* otherwise a parser rebuilt from the argument definitions transcribed below, each with its source.

Then what each script does with the parsed values right after parsing (Gemma's `CKPT_PARSER[args.ckpt_type]`
and its TP-only Mapping, Phi's `assert args.pp_size == 1`) is checked on the result.

Sources of the transcription: NVIDIA/TensorRT-LLM `examples/models/core/<family>/convert_checkpoint.py`,
`parse_arguments()`. The v1.1.0 tag could not be read here; the files read are the stored versions of
later commits (named per family below, all after the TensorRT engine path's deprecation notice was
added), in which the arguments used here are those of the 1.x line. Add the v1.1.0 files to the
reference folder to run upstream's parsers instead.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from components.catalog import versions
from components.config import models as model_config
from components.serving.builders import engine_build as eb
from tests.upstream_code import reference_file, run_argument_parser

DTYPES = ["auto", "float16", "bfloat16", "float32"]


@dataclass(frozen=True)
class Transcribed:
    source: str  # commit and line of parse_arguments() in the file read
    options: dict[tuple[str, ...], dict[str, Any]]  # option strings -> add_argument keywords
    post_parse: str = ""  # what the script checks right after parsing (asserted below)
    notes: list[str] = field(default_factory=list)


COMMON: dict[tuple[str, ...], dict[str, Any]] = {
    ("--model_dir",): {"type": str, "default": None},
    ("--tp_size",): {"type": int, "default": 1},
    ("--pp_size",): {"type": int, "default": 1},
    ("--dtype",): {"type": str, "default": "auto", "choices": DTYPES},
    ("--output_dir",): {"type": str, "default": "tllm_checkpoint"},
    ("--workers",): {"type": int, "default": 1},
}
TRANSCRIBED = {
    "llama": Transcribed("commit 368f8f2a, parse_arguments() line 22", COMMON),
    "qwen": Transcribed(
        "commit 0df9aaf3, parse_arguments() line 18 (--model_dir required=True)",
        {**COMMON, ("--model_dir",): {"type": str, "default": None, "required": True}},
    ),
    "gpt": Transcribed("commit 7edbcccb, parse_arguments() line 23", COMMON),
    "phi": Transcribed(
        "commit 10c1d594, parse_arguments() line 31", COMMON, post_parse="__main__: assert args.pp_size == 1"
    ),
    "gemma": Transcribed(
        "commit 310decb9, parse_arguments() line 30 (--ckpt-type line 32, --world-size line 40)",
        {
            ("--ckpt-type",): {"choices": ["jax", "keras", "torch", "hf"]},  # type=CheckpointType (str Enum)
            ("--model-dir", "--model_dir"): {"type": Path, "required": True},
            ("--output-model-dir", "--output_dir"): {"type": Path, "required": True},
            ("--world-size",): {"type": int, "default": 1},  # "world size, only support tensor parallelism now"
            ("--dtype",): {"type": str, "default": "auto", "choices": DTYPES},
        },
        post_parse="main(): CKPT_PARSER[args.ckpt_type]; Mapping(world_size, tp_size=world_size, pp_size=1)",
    ),
}


def load_build_script():
    spec = importlib.util.spec_from_file_location("build_engine_under_test", eb.BUILD_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BUILD = load_build_script()
FAMILIES = sorted(set(BUILD.CONVERTERS.values()))
# From the transcription: Gemma's parser has no pipeline-parallel argument, Phi's script asserts pp 1.
NO_PIPELINE_PARALLEL = {"gemma", "phi"}


def upstream_script(family: str) -> Path | None:
    return reference_file(
        f"trtllm-convert/TensorRT-LLM-v{versions.TENSORRT_LLM_ENGINE_VERSION}/examples/models/core/{family}/convert_checkpoint.py"
    )


class ParserExit(Exception):
    pass


def parse(family: str, argv: list[str]) -> argparse.Namespace:
    """The converter's parser on argv: upstream's when available, else the transcription's."""
    script = upstream_script(family)
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            if script is not None:
                return run_argument_parser(script, argv)
            parser = argparse.ArgumentParser(prog=f"{family}/convert_checkpoint.py")
            for names, kwargs in TRANSCRIBED[family].options.items():
                parser.add_argument(*names, **kwargs)
            return parser.parse_args(argv)
    except SystemExit as exc:
        raise ParserExit(f"{family} converter refuses {argv}: {stderr.getvalue().strip()}") from exc


def build_args(family: str, tp: int, pp: int, dtype: str = "bfloat16") -> argparse.Namespace:
    return BUILD.parse_args([*_argv(tp, pp), "--dtype", dtype])


def test_every_family_has_a_transcription():
    assert set(TRANSCRIBED) == set(FAMILIES)
    # the stack config offers exactly the build script's families
    literal = model_config.EngineBuildOptions.model_fields["model_family"].annotation
    assert set(getattr(literal, "__args__", ())) == {"auto", *FAMILIES}
    assert set(model_config.CONVERTERS_WITHOUT_PIPELINE_PARALLEL) == NO_PIPELINE_PARALLEL
    assert set(BUILD.CONVERTERS_WITHOUT_PIPELINE_PARALLEL) == NO_PIPELINE_PARALLEL


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("tp,pp", [(1, 1), (4, 1), (2, 2)], ids=["tp1", "tp4", "tp2-pp2"])
def test_the_converter_takes_the_arguments_of_the_build(family, tp, pp):
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            args = BUILD.parse_args([*_argv(tp, pp), "--model-family", family])
    except SystemExit:
        # The build refuses before anything runs, with the reason (at preview too: test_config_checks.py);
        # only for a family whose converter has no pipeline parallelism.
        assert pp > 1 and family in NO_PIPELINE_PARALLEL, stderr.getvalue()
        assert "has no pipeline parallelism" in stderr.getvalue()
        return
    command = BUILD.convert_command(args, family)
    assert command[:2] == ["python3", str(BUILD.converter_script(family))]
    assert command[1].endswith(f"examples/models/core/{family}/convert_checkpoint.py")
    ns = parse(family, command[2:])
    paths = BUILD.paths(args)
    if family == "gemma":
        assert str(ns.ckpt_type) in ("hf", "CheckpointType.hf")  # main(): CKPT_PARSER[args.ckpt_type]
        assert (str(ns.model_dir), str(ns.output_model_dir)) == (str(paths["hf"]), str(paths["checkpoint"]))
        # main(): Mapping(world_size=world_size, tp_size=world_size, pp_size=1): all of it is TP
        assert ns.world_size == tp * pp and pp == 1
    else:
        assert (ns.model_dir, ns.output_dir) == (str(paths["hf"]), str(paths["checkpoint"]))
        assert (ns.tp_size, ns.pp_size) == (tp, pp)
        assert ns.workers == tp * pp
        if family == "phi":
            assert ns.pp_size == 1, "phi's convert_checkpoint.py __main__: assert args.pp_size == 1"
    assert ns.dtype == "bfloat16"


def test_the_former_common_argument_list_is_what_gemma_refuses():
    """The defect: the Llama-style list, which every converter used to get."""
    args = build_args("gemma", 1, 1)
    llama_style = BUILD.convert_command(args, "llama")[2:]
    with pytest.raises(ParserExit, match="unrecognized arguments|tp_size"):
        parse("gemma", llama_style)


def test_fp8_builds_keep_pipeline_parallel():
    for family in NO_PIPELINE_PARALLEL:
        # FP8 goes through examples/quantization/quantize.py, which takes --pp_size for every family
        assert not BUILD.family_problems(build_args(family, 2, 2, dtype="fp8"), family)


def _argv(tp: int, pp: int) -> list[str]:
    return [
        "--hf-model-id",
        "org/model",
        "--served-model-name",
        "m",
        "--tp-size",
        str(tp),
        "--pp-size",
        str(pp),
        "--max-batch-size",
        "8",
        "--max-input-len",
        "1024",
        "--max-seq-len",
        "2048",
        "--max-num-tokens",
        "4096",
    ]


@pytest.mark.parametrize(
    "model_type,expected", [("gemma2", "gemma"), ("phi3", "phi"), ("qwen2", "qwen"), ("mistral", "llama")]
)
def test_detected_families(tmp_path, model_type, expected):
    (tmp_path / "config.json").write_text(f'{{"model_type": "{model_type}"}}')
    assert BUILD.detect_family(tmp_path) == expected


def test_qwen_v1_is_refused_with_the_reason(tmp_path):
    """Qwen (v1) checkpoints need remote code and qwen.tiktoken: refused at build, and at preview by name."""
    (tmp_path / "config.json").write_text('{"model_type": "qwen"}')
    with pytest.raises(SystemExit, match=r"trust_remote_code.*qwen\.tiktoken"):
        BUILD.detect_family(tmp_path)
