#!/usr/bin/env python3
"""Build a TensorRT-LLM engine and its Triton model repository (runs inside the Triton TRT-LLM image).

The TrtllmEngine dynamic resource (components/engine_build.py) ships this file to a
Kubernetes Job through a ConfigMap and runs it on the GPU NodePool that will serve the
engine. It writes everything Triton needs to --output-dir:

    engine/            rank<N>.engine + config.json          (trtllm-build)
    tokenizer/         tokenizer and model config files      (from the Hugging Face download)
    model_repository/  <served-model-name>/ (tensorrt_llm_bls + our streaming wrapper), ensemble/,
                       preprocessing/, tensorrt_llm/, postprocessing/: the image's
                       inflight-batcher templates, filled
    build.json         what was built, from what, and how long each step took

The Job's upload container then copies --output-dir to s3://<bucket>/engines/<key>/ and
writes the completion marker. Paths inside the filled config.pbtxt files point at
--stage-dir, where the Triton pod's init container stages that S3 prefix.

`--dry-run` validates the arguments and prints the exact commands without running them
(no GPU, no network, no image needed). Standard library only, so it runs anywhere.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

# Where the Triton TRT-LLM image (tritonserver:<yy.mm>-trtllm-python-py3) keeps the
# TensorRT-LLM examples and its Triton backend's model templates and tools.
APP_DIR = Path(os.environ.get("TRTLLM_APP_DIR", "/app"))
TEMPLATE_MODELS = ("ensemble", "preprocessing", "tensorrt_llm", "postprocessing", "tensorrt_llm_bls")
# The served entry point is the BLS model, not the ensemble: the ensemble's postprocessing step
# decodes each streamed response's tokens alone (upstream postprocessing/1/model.py calls
# tokenizer.batch_decode on just those tokens), so a character split across tokens arrives as
# U+FFFD. The BLS (tensorrt_llm_bls/1/model.py + lib/decode.py, accumulate_tokens) keeps one
# request's tokens together; bls_stream.py (shipped next to this script) turns its cumulative
# text back into deltas that only ever end on a complete character.
SERVED_TEMPLATE = "tensorrt_llm_bls"
# Files shipped next to this script (the build Job's ConfigMap) and copied into the served model.
SCRIPT_HOME = Path(__file__).resolve().parent
SHIPPED_FILES = ("bls_stream.py", "text_deltas.py")
# Every model's version directory must hold a file: S3 has no empty directories, so an empty
# `1/` vanishes between the upload and the Triton pod's staging, and Triton then finds no version.
VERSION_PLACEHOLDER = ".keep"
BATCH_SCHEDULER_POLICIES = ("max_utilization", "guaranteed_no_evict")

# Hugging Face config.json model_type -> the TensorRT-LLM example that converts it.
CONVERTERS = {
    "llama": "llama",
    "mistral": "llama",
    "mixtral": "llama",
    "qwen2": "qwen",
    "qwen3": "qwen",
    "gemma": "gemma",
    "gemma2": "gemma",
    "phi": "phi",
    "phi3": "phi",
    "gpt2": "gpt",
}
# model_type values refused with the reason: what their conversion needs, this build does not provide.
REFUSED_MODEL_TYPES = {
    # Qwen (v1): its Hugging Face repository ships its own modeling/tokenization code (auto_map,
    # loaded with trust_remote_code by the converter's AutoConfig and by the preprocessing model's
    # AutoTokenizer) and a `qwen.tiktoken` vocabulary read through the `tiktoken` package; this build
    # downloads no *.py files and the tokenizer/ directory carries neither.
    "qwen": "Qwen (v1) needs the model repository's own Python code (trust_remote_code) and its "
    "qwen.tiktoken vocabulary, which this build does not fetch or serve; use Qwen1.5 or later "
    "(model_type qwen2, the same converter)",
}

# How each converter (examples/models/core/<family>/convert_checkpoint.py of the TensorRT-LLM the
# image carries, versions.TENSORRT_LLM_ENGINE_VERSION) is called; tests/unit/test_engine_converters.py runs
# each upstream parser on what convert_command() builds. Most take --model_dir --output_dir --dtype
# --tp_size --pp_size --workers. Gemma's parse_arguments() takes --ckpt-type (no default:
# main() looks the parser class up by it), --model-dir, --output-model-dir and --world-size, "world
# size, only support tensor parallelism now" (main() builds Mapping(tp_size=world_size, pp_size=1)).
# Phi's takes the common ones, but its __main__ asserts `args.pp_size == 1` ("Pipeline parallelism
# is not supported.").
CONVERTERS_WITHOUT_PIPELINE_PARALLEL = ("gemma", "phi")
# Files copied from the download into tokenizer/ (pre/postprocessing load the tokenizer from there).
TOKENIZER_FILES = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
    "added_tokens.json",
)
DOWNLOAD_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.tiktoken", "*.txt"]
DOWNLOAD_IGNORE = ["original/*", "*.pth", "*.bin"]  # duplicates of the safetensors weights
DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
PLACEHOLDER = re.compile(r"\$\{(\w+)\}")


class UsageError(ValueError):
    pass


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hf-model-id", required=True, help="Hugging Face repo id, e.g. meta-llama/Llama-3.2-1B-Instruct")
    p.add_argument("--hf-revision", default="main", help="branch, tag or commit sha")
    p.add_argument("--served-model-name", required=True, help="name clients call (the BLS model's name)")
    p.add_argument("--dtype", choices=("float16", "bfloat16", "fp8"), default="bfloat16")
    p.add_argument("--tp-size", type=int, default=1)
    p.add_argument("--pp-size", type=int, default=1)
    p.add_argument(
        "--gpus",
        type=int,
        default=None,
        help="GPUs the build sees (default tp*pp); a multi-node engine builds all ranks on one node",
    )
    p.add_argument("--max-batch-size", type=int, required=True)
    p.add_argument("--max-input-len", type=int, required=True)
    p.add_argument("--max-seq-len", type=int, required=True)
    p.add_argument("--max-num-tokens", type=int, required=True)
    p.add_argument("--paged-kv-cache", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--multiple-profiles", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--kv-cache-free-gpu-mem-fraction", type=float, default=0.9)
    # Serving settings filled into tensorrt_llm/config.pbtxt (set explicitly: the backend's
    # defaults changed across releases; see models[].engine.* in components/config/).
    p.add_argument("--batch-scheduler-policy", choices=BATCH_SCHEDULER_POLICIES, default="max_utilization")
    p.add_argument("--enable-kv-cache-reuse", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--enable-chunked-context", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--max-queue-delay-microseconds", type=int, default=0)
    p.add_argument(
        "--bls-instance-count",
        type=int,
        default=0,
        help="instances of the served BLS model (0: --max-batch-size, upstream's advice)",
    )
    p.add_argument(
        "--model-family",
        default="auto",
        help=f"converter to use: auto (from config.json model_type) or one of {sorted(set(CONVERTERS.values()))}",
    )
    p.add_argument(
        "--weights-dir",
        default=None,
        help="a Hugging Face snapshot already on disk (the Job stages the weights mirror there): no download",
    )
    p.add_argument("--work-dir", default="/work", help="scratch space (download, checkpoint)")
    p.add_argument("--output-dir", default="/work/out", help="what gets uploaded to S3")
    p.add_argument("--stage-dir", default="/staged", help="where the Triton pod will find the output")
    p.add_argument("--cache-key", default="", help="the engine cache key, recorded in build.json")
    p.add_argument("--dry-run", action="store_true", help="validate and print the commands, run nothing")
    args = p.parse_args(argv)
    try:
        validate(args)
    except UsageError as exc:
        p.error(str(exc))
    return args


def validate(args: argparse.Namespace) -> None:
    problems = []
    if not re.match(r"^[A-Za-z0-9][-\w.]*/[-\w.]+$", args.hf_model_id):
        problems.append(f"--hf-model-id {args.hf_model_id!r} is not an owner/name Hugging Face id")
    if not DNS_LABEL.match(args.served_model_name):
        problems.append(f"--served-model-name {args.served_model_name!r} must be a DNS label (a-z, 0-9, -)")
    if args.served_model_name in TEMPLATE_MODELS:
        problems.append(f"--served-model-name {args.served_model_name!r} clashes with a model of the repository")
    for name in ("tp_size", "pp_size", "max_batch_size", "max_input_len", "max_seq_len", "max_num_tokens"):
        if getattr(args, name) < 1:
            problems.append(f"--{name.replace('_', '-')} must be at least 1")
    if args.max_input_len >= args.max_seq_len:
        problems.append(f"--max-input-len ({args.max_input_len}) must be below --max-seq-len ({args.max_seq_len})")
    if args.max_queue_delay_microseconds < 0:
        problems.append("--max-queue-delay-microseconds must be at least 0")
    if args.bls_instance_count < 0:
        problems.append("--bls-instance-count must be at least 0")
    if not args.paged_kv_cache and (args.enable_kv_cache_reuse or args.enable_chunked_context):
        problems.append("--enable-kv-cache-reuse and --enable-chunked-context need --paged-kv-cache")
    if not 0 < args.kv_cache_free_gpu_mem_fraction <= 1:
        problems.append("--kv-cache-free-gpu-mem-fraction must be in (0, 1]")
    if args.model_family != "auto" and args.model_family not in set(CONVERTERS.values()):
        problems.append(f"--model-family {args.model_family!r} unknown; use auto or {sorted(set(CONVERTERS.values()))}")
    elif args.model_family != "auto":
        problems += family_problems(args, args.model_family)
    for name in ("work_dir", "output_dir", "stage_dir"):
        if not os.path.isabs(getattr(args, name)):
            problems.append(f"--{name.replace('_', '-')} must be an absolute path")
    if problems:
        raise UsageError("; ".join(problems))


# --------------------------------------------------------------------------- the plan


def paths(args: argparse.Namespace) -> dict[str, Path]:
    work, out, stage = Path(args.work_dir), Path(args.output_dir), Path(args.stage_dir)
    return {
        "hf": work / "hf",
        "checkpoint": work / "checkpoint",
        "engine": out / "engine",
        "tokenizer": out / "tokenizer",
        "repository": out / "model_repository",
        "staged_engine": stage / "engine",
        "staged_tokenizer": stage / "tokenizer",
    }


def converter_script(family: str) -> Path:
    return APP_DIR / "examples" / "models" / "core" / family / "convert_checkpoint.py"


def family_problems(args: argparse.Namespace, family: str) -> list[str]:
    """Why `family`'s converter cannot make this checkpoint (empty when it can)."""
    if family in CONVERTERS_WITHOUT_PIPELINE_PARALLEL and args.pp_size > 1 and args.dtype != "fp8":
        return [
            f"--pp-size {args.pp_size}: TensorRT-LLM's {family} checkpoint converter has no pipeline "
            f"parallelism (examples/models/core/{family}/convert_checkpoint.py); use --tp-size "
            f"{args.tp_size * args.pp_size} --pp-size 1"
        ]
    return []


def convert_command(args: argparse.Namespace, family: str) -> list[str]:
    p = paths(args)
    world = args.tp_size * args.pp_size
    if args.dtype == "fp8":
        # FP8 needs calibration (ModelOpt), which the quantization example does for every family.
        return [
            "python3",
            str(APP_DIR / "examples" / "quantization" / "quantize.py"),
            "--model_dir",
            str(p["hf"]),
            "--output_dir",
            str(p["checkpoint"]),
            "--dtype",
            "bfloat16",
            "--qformat",
            "fp8",
            "--kv_cache_dtype",
            "fp8",
            "--calib_size",
            "512",
            "--tp_size",
            str(args.tp_size),
            "--pp_size",
            str(args.pp_size),
        ]
    if family == "gemma":
        return [
            "python3",
            str(converter_script(family)),
            "--ckpt-type",
            "hf",
            "--model-dir",
            str(p["hf"]),
            "--output-model-dir",
            str(p["checkpoint"]),
            "--dtype",
            args.dtype,
            "--world-size",
            str(args.tp_size),
        ]
    return [
        "python3",
        str(converter_script(family)),
        "--model_dir",
        str(p["hf"]),
        "--output_dir",
        str(p["checkpoint"]),
        "--dtype",
        args.dtype,
        "--tp_size",
        str(args.tp_size),
        "--pp_size",
        str(args.pp_size),
        "--workers",
        str(world),
    ]


def build_command(args: argparse.Namespace) -> list[str]:
    p = paths(args)
    on = lambda flag: "enable" if flag else "disable"  # noqa: E731
    cmd = [
        "trtllm-build",
        "--checkpoint_dir",
        str(p["checkpoint"]),
        "--output_dir",
        str(p["engine"]),
        "--max_batch_size",
        str(args.max_batch_size),
        "--max_input_len",
        str(args.max_input_len),
        "--max_seq_len",
        str(args.max_seq_len),
        "--max_num_tokens",
        str(args.max_num_tokens),
        "--kv_cache_type",
        "paged" if args.paged_kv_cache else "continuous",
        "--multiple_profiles",
        on(args.multiple_profiles),
        "--gemm_plugin",
        "auto",
        "--gpt_attention_plugin",
        "auto",
        "--remove_input_padding",
        "enable",
        "--context_fmha",
        "enable",
        # trtllm-build puts rank r on GPU r % workers (TensorRT-LLM commands/build.py parallel_build),
        # so parallel workers never exceed the GPUs of the build pod.
        "--workers",
        str(min(args.tp_size * args.pp_size, args.gpus or args.tp_size * args.pp_size)),
    ]
    if args.paged_kv_cache:
        # Paged context FMHA is what lets the backend chunk long prompts and reuse KV blocks.
        cmd += ["--use_paged_context_fmha", "enable"]
    return cmd


# The data type of the optional prompt-tuning / encoder-feature inputs. Not the engine's dtype:
# the upstream ensemble (and BLS) config declares `prompt_embedding_table` as TYPE_FP16 and maps it
# straight into tensorrt_llm, and Triton's ensemble validation rejects any data-type mismatch of a
# mapped tensor, optional or not (triton-inference-server/core r25.12
# src/ensemble_scheduler/ensemble_utils.cc ValidateTensorConsistency), so a bf16 fill here makes
# the ensemble fail to load. Upstream examples fill TYPE_FP16 for both (NVIDIA/TensorRT-LLM
# triton_backend docs, e.g. llama.md / multimodal.md fill_template.py lines);
# encoder_input_features is not mapped by the ensemble and only mllama needs TYPE_BF16 there
# (tensorrtllm_backend docs/model_config.md), a model family this build does not convert.
PROMPT_TABLE_DATA_TYPE = "TYPE_FP16"


def fill_values(args: argparse.Namespace) -> dict[str, dict[str, str]]:
    """Template model -> placeholder values for the image's tools/fill_template.py."""
    p = paths(args)
    batch = str(args.max_batch_size)
    tokenizer, engine = str(p["staged_tokenizer"]), str(p["staged_engine"])
    tf = lambda flag: "true" if flag else "false"  # noqa: E731
    return {
        "ensemble": {"triton_max_batch_size": batch, "logits_datatype": "TYPE_FP32"},
        "tensorrt_llm_bls": {
            "triton_max_batch_size": batch,
            "decoupled_mode": "true",
            "logits_datatype": "TYPE_FP32",
            "prompt_embedding_table_data_type": PROMPT_TABLE_DATA_TYPE,
            "tensorrt_llm_model_name": "tensorrt_llm",
            # The BLS handles one request at a time per instance: "set the number of model instances
            # to the maximum batch size supported by the TRT engine to allow concurrent request
            # execution" (triton-inference-server/tensorrtllm_backend docs/model_config.md).
            "bls_instance_count": str(args.bls_instance_count or args.max_batch_size),
            # One request's tokens decoded together: bls_stream.py emits the deltas.
            "accumulate_tokens": "true",
        },
        "preprocessing": {
            "tokenizer_dir": tokenizer,
            "engine_dir": engine,
            "triton_max_batch_size": batch,
            "preprocessing_instance_count": "1",
            "max_queue_delay_microseconds": "0",
            "max_queue_size": "0",
        },
        "postprocessing": {
            "tokenizer_dir": tokenizer,
            "triton_max_batch_size": batch,
            "postprocessing_instance_count": "1",
            "skip_special_tokens": "True",
        },
        "tensorrt_llm": {
            "triton_backend": "tensorrtllm",
            "triton_max_batch_size": batch,
            "decoupled_mode": "true",
            "engine_dir": engine,
            "tokenizer_dir": tokenizer,
            "batching_strategy": "inflight_fused_batching",
            "max_beam_width": "1",
            "kv_cache_free_gpu_mem_fraction": str(args.kv_cache_free_gpu_mem_fraction),
            "exclude_input_in_output": "true",
            "enable_chunked_context": tf(args.enable_chunked_context),
            "encoder_input_features_data_type": PROMPT_TABLE_DATA_TYPE,
            "prompt_embedding_table_data_type": PROMPT_TABLE_DATA_TYPE,
            "logits_datatype": "TYPE_FP32",
            "batch_scheduler_policy": args.batch_scheduler_policy,
            "enable_kv_cache_reuse": tf(args.enable_kv_cache_reuse),
            "max_queue_delay_microseconds": str(args.max_queue_delay_microseconds),
            "max_queue_size": "0",
        },
    }


def fill_command(config_path: Path, values: dict[str, str]) -> list[str]:
    escape = lambda v: v.replace("\\", "\\\\").replace(",", "\\,").replace(":", "\\:")  # noqa: E731
    subs = ",".join(f"{k}:{escape(v)}" for k, v in sorted(values.items()))
    return ["python3", str(APP_DIR / "tools" / "fill_template.py"), "-i", str(config_path), subs]


def repository_model_dir(args: argparse.Namespace, template: str) -> Path:
    name = args.served_model_name if template == SERVED_TEMPLATE else template
    return paths(args)["repository"] / name


def plan(args: argparse.Namespace, family: str) -> list[tuple[str, str]]:
    """(step, what it runs) in order: shell commands as one shell line, Python calls as a call."""
    p = paths(args)
    download_step = (
        f"use the staged snapshot {args.weights_dir} (config.json required)"
        if args.weights_dir
        else f"huggingface_hub.snapshot_download(repo_id={args.hf_model_id!r}, "
        f"revision={args.hf_revision!r}, local_dir={str(p['hf'])!r}, "
        f"allow_patterns={DOWNLOAD_PATTERNS!r}, ignore_patterns={DOWNLOAD_IGNORE!r})"
    )
    steps: list[tuple[str, str]] = [
        ("download", download_step),
        ("convert", shlex.join(convert_command(args, family))),
        ("build", shlex.join(build_command(args))),
        ("tokenizer", f"copy {' '.join(TOKENIZER_FILES)} (those present) from {p['hf']} to {p['tokenizer']}"),
    ]
    values = fill_values(args)
    for template in TEMPLATE_MODELS:
        src = APP_DIR / "all_models" / "inflight_batcher_llm" / template
        dst = repository_model_dir(args, template)
        steps.append((f"template:{template}", shlex.join(["cp", "-r", str(src), str(dst)])))
        # At run time only the keys the image's template contains are passed.
        steps.append((f"fill:{template}", shlex.join(fill_command(dst / "config.pbtxt", values[template]))))
    served = repository_model_dir(args, SERVED_TEMPLATE) / "1"
    steps.append(
        (
            "stream-wrapper",
            f"mv {served}/model.py {served}/upstream_model.py; cp {SCRIPT_HOME / 'bls_stream.py'} {served}/model.py; "
            f"cp {SCRIPT_HOME / 'text_deltas.py'} {served}/text_deltas.py",
        )
    )
    steps.append(("version-files", f"write 1/{VERSION_PLACEHOLDER} into every version directory without a file"))
    return steps


# --------------------------------------------------------------------------- running it


def log(message: str) -> None:
    print(f"[build_engine {time.strftime('%H:%M:%S')}] {message}", flush=True)


def run(cmd: list[str]) -> None:
    log("$ " + shlex.join(cmd))
    subprocess.run(cmd, check=True)


def download(args: argparse.Namespace) -> Path:
    if args.weights_dir:  # staged from the weights mirror by the Job's stage-weights init container
        staged = Path(args.weights_dir)
        if not (staged / "config.json").is_file():
            raise SystemExit(f"--weights-dir {staged} has no config.json: the weights were not staged")
        return staged
    from huggingface_hub import snapshot_download  # in the TRT-LLM image; HF_TOKEN comes from the env

    target = paths(args)["hf"]
    snapshot_download(
        repo_id=args.hf_model_id,
        revision=args.hf_revision,
        local_dir=str(target),
        allow_patterns=DOWNLOAD_PATTERNS,
        ignore_patterns=DOWNLOAD_IGNORE,
    )
    return target


def detect_family(hf_dir: Path) -> str:
    model_type = json.loads((hf_dir / "config.json").read_text()).get("model_type", "")
    if model_type in REFUSED_MODEL_TYPES:
        raise SystemExit(f"config.json model_type {model_type!r}: {REFUSED_MODEL_TYPES[model_type]}")
    if model_type not in CONVERTERS:
        raise SystemExit(
            f"config.json model_type {model_type!r} has no converter here; known: {sorted(CONVERTERS)}. "
            "Add it to CONVERTERS in model_repository/trtllm/build_engine.py"
        )
    return CONVERTERS[model_type]


def copy_tokenizer(args: argparse.Namespace) -> list[str]:
    p = paths(args)
    p["tokenizer"].mkdir(parents=True, exist_ok=True)
    copied = []
    for name in TOKENIZER_FILES:
        if (p["hf"] / name).is_file():
            shutil.copy2(p["hf"] / name, p["tokenizer"] / name)
            copied.append(name)
    if not any(n.startswith("tokenizer") for n in copied):
        raise SystemExit(f"no tokenizer files in the download of {args.hf_model_id}")
    return copied


def unfilled_placeholders(text: str) -> list[str]:
    """Placeholders left outside string parameters: Triton cannot parse such a config.

    Optional backend parameters (`string_value: "${...}"`) may stay unfilled; the
    backends treat them as unset.
    """
    return sorted({m for line in text.splitlines() if "string_value" not in line for m in PLACEHOLDER.findall(line)})


def ensure_version_files(repository: Path) -> list[Path]:
    """Give every model a `1/` version directory holding at least one file; return what was added."""
    added = []
    for model_dir in sorted(d for d in repository.iterdir() if d.is_dir()):
        versions = [d for d in model_dir.iterdir() if d.is_dir() and d.name.isdigit()] or [model_dir / "1"]
        for version in versions:
            version.mkdir(exist_ok=True)
            if not any(p.is_file() for p in version.rglob("*")):
                placeholder = version / VERSION_PLACEHOLDER
                placeholder.write_text("keeps this version directory in object storage (S3 has no empty directories)\n")
                added.append(placeholder)
    return added


def install_stream_wrapper(model_dir: Path) -> None:
    """The served BLS model: upstream's model.py kept as upstream_model.py, ours in front of it."""
    version = model_dir / "1"
    (version / "model.py").rename(version / "upstream_model.py")
    shutil.copy2(SCRIPT_HOME / "bls_stream.py", version / "model.py")
    shutil.copy2(SCRIPT_HOME / "text_deltas.py", version / "text_deltas.py")  # bls_stream.py imports it


def fill_repository(args: argparse.Namespace) -> None:
    values = fill_values(args)
    repository = paths(args)["repository"]
    for template in TEMPLATE_MODELS:
        src = APP_DIR / "all_models" / "inflight_batcher_llm" / template
        dst = repository_model_dir(args, template)
        shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
        config = dst / "config.pbtxt"
        present = set(PLACEHOLDER.findall(config.read_text()))
        # fill_template.py asserts each key exists in the file, and templates vary between releases.
        wanted = {k: v for k, v in values[template].items() if k in present}
        if wanted:
            run(fill_command(config, wanted))
        text = config.read_text()
        if template == SERVED_TEMPLATE:
            # The BLS is the entry point: serve it under the stack's model name.
            text = re.sub(
                r'^name:\s*"tensorrt_llm_bls"', f'name: "{args.served_model_name}"', text, count=1, flags=re.M
            )
            config.write_text(text)
            install_stream_wrapper(dst)
        left = unfilled_placeholders(text)
        if left:
            raise SystemExit(f"{config}: placeholders {left} are still unfilled; extend fill_values()")
    ensure_version_files(repository)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.dry_run:
        family = args.model_family if args.model_family != "auto" else "<model_type from config.json>"
        print(
            json.dumps(
                {
                    "served_model_name": args.served_model_name,
                    "cache_key": args.cache_key,
                    "output_dir": args.output_dir,
                    "stage_dir": args.stage_dir,
                }
            )
        )
        for step, command in plan(args, family):
            print(f"{step}: {command}")
        return 0

    timings: dict[str, float] = {}
    out = Path(args.output_dir)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)

    started = time.monotonic()
    hf_dir = download(args)
    timings["download_s"] = round(time.monotonic() - started, 1)
    detected = detect_family(hf_dir)  # refuses model types this build cannot convert, whatever --model-family says
    family = args.model_family if args.model_family != "auto" else detected
    if family != detected:
        raise SystemExit(
            f"--model-family {family} (engine.modelFamily) but {args.hf_model_id}'s config.json says "
            f"{detected}; set engine.modelFamily: {detected} or auto"
        )
    problems = family_problems(args, family)
    if problems:
        raise SystemExit("; ".join(problems))

    for step, cmd in (("convert", convert_command(args, family)), ("build", build_command(args))):
        started = time.monotonic()
        run(cmd)
        timings[f"{step}_s"] = round(time.monotonic() - started, 1)
    shutil.rmtree(paths(args)["checkpoint"], ignore_errors=True)  # free the scratch disk before upload

    tokenizer_files = copy_tokenizer(args)
    fill_repository(args)
    (out / "build.json").write_text(
        json.dumps(
            {
                "cache_key": args.cache_key,
                "hf_model_id": args.hf_model_id,
                "hf_revision": args.hf_revision,
                "served_model_name": args.served_model_name,
                "model_family": family,
                "dtype": args.dtype,
                "tp_size": args.tp_size,
                "pp_size": args.pp_size,
                "max_batch_size": args.max_batch_size,
                "max_input_len": args.max_input_len,
                "max_seq_len": args.max_seq_len,
                "max_num_tokens": args.max_num_tokens,
                "paged_kv_cache": args.paged_kv_cache,
                "multiple_profiles": args.multiple_profiles,
                "tokenizer_files": tokenizer_files,
                "fill_values": fill_values(args),
                "image": os.environ.get("TRITON_IMAGE", ""),
                "timings": timings,
            },
            indent=2,
        )
        + "\n"
    )
    log(f"done: {out} ({timings})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
