#!/usr/bin/env python3
"""Build a TensorRT-LLM engine and its Triton model repository (runs inside the Triton TRT-LLM image).

The TrtllmEngine dynamic resource (components/engine_build.py) ships this file to a
Kubernetes Job through a ConfigMap and runs it on the GPU NodePool that will serve the
engine. It writes everything Triton needs to --output-dir:

    engine/            rank<N>.engine + config.json          (trtllm-build)
    tokenizer/         tokenizer and model config files      (from the Hugging Face download)
    model_repository/  <served-model-name>/ (the ensemble), preprocessing/, tensorrt_llm/,
                       postprocessing/: the image's inflight-batcher templates, filled
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
TEMPLATE_MODELS = ("ensemble", "preprocessing", "tensorrt_llm", "postprocessing")

# Hugging Face config.json model_type -> the TensorRT-LLM example that converts it.
CONVERTERS = {
    "llama": "llama", "mistral": "llama", "mixtral": "llama",
    "qwen": "qwen", "qwen2": "qwen", "qwen3": "qwen",
    "gemma": "gemma", "gemma2": "gemma",
    "phi": "phi", "phi3": "phi",
    "gpt2": "gpt",
}
# Files copied from the download into tokenizer/ (pre/postprocessing load the tokenizer from there).
TOKENIZER_FILES = (
    "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
    "special_tokens_map.json", "tokenizer.model", "vocab.json", "merges.txt", "added_tokens.json",
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
    p.add_argument("--served-model-name", required=True, help="name clients call (the ensemble's name)")
    p.add_argument("--dtype", choices=("float16", "bfloat16", "fp8"), default="bfloat16")
    p.add_argument("--tp-size", type=int, default=1)
    p.add_argument("--pp-size", type=int, default=1)
    p.add_argument("--gpus", type=int, default=None,
                   help="GPUs the build sees (default tp*pp); a multi-node engine builds all ranks on one node")
    p.add_argument("--max-batch-size", type=int, required=True)
    p.add_argument("--max-input-len", type=int, required=True)
    p.add_argument("--max-seq-len", type=int, required=True)
    p.add_argument("--max-num-tokens", type=int, required=True)
    p.add_argument("--paged-kv-cache", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--multiple-profiles", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--kv-cache-free-gpu-mem-fraction", type=float, default=0.9)
    p.add_argument("--model-family", default="auto",
                   help=f"converter to use: auto (from config.json model_type) or one of {sorted(set(CONVERTERS.values()))}")
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
    for name in ("tp_size", "pp_size", "max_batch_size", "max_input_len", "max_seq_len", "max_num_tokens"):
        if getattr(args, name) < 1:
            problems.append(f"--{name.replace('_', '-')} must be at least 1")
    if args.max_input_len >= args.max_seq_len:
        problems.append(f"--max-input-len ({args.max_input_len}) must be below --max-seq-len ({args.max_seq_len})")
    if not 0 < args.kv_cache_free_gpu_mem_fraction <= 1:
        problems.append("--kv-cache-free-gpu-mem-fraction must be in (0, 1]")
    if args.model_family != "auto" and args.model_family not in set(CONVERTERS.values()):
        problems.append(f"--model-family {args.model_family!r} unknown; use auto or {sorted(set(CONVERTERS.values()))}")
    for name in ("work_dir", "output_dir", "stage_dir"):
        if not os.path.isabs(getattr(args, name)):
            problems.append(f"--{name.replace('_', '-')} must be an absolute path")
    if problems:
        raise UsageError("; ".join(problems))


# --------------------------------------------------------------------------- the plan

def paths(args: argparse.Namespace) -> dict[str, Path]:
    work, out, stage = Path(args.work_dir), Path(args.output_dir), Path(args.stage_dir)
    return {
        "hf": work / "hf", "checkpoint": work / "checkpoint",
        "engine": out / "engine", "tokenizer": out / "tokenizer", "repository": out / "model_repository",
        "staged_engine": stage / "engine", "staged_tokenizer": stage / "tokenizer",
    }


def converter_script(family: str) -> Path:
    return APP_DIR / "examples" / "models" / "core" / family / "convert_checkpoint.py"


def convert_command(args: argparse.Namespace, family: str) -> list[str]:
    p = paths(args)
    world = args.tp_size * args.pp_size
    if args.dtype == "fp8":
        # FP8 needs calibration (ModelOpt), which the quantization example does for every family.
        return [
            "python3", str(APP_DIR / "examples" / "quantization" / "quantize.py"),
            "--model_dir", str(p["hf"]), "--output_dir", str(p["checkpoint"]),
            "--dtype", "bfloat16", "--qformat", "fp8", "--kv_cache_dtype", "fp8", "--calib_size", "512",
            "--tp_size", str(args.tp_size), "--pp_size", str(args.pp_size),
        ]
    return [
        "python3", str(converter_script(family)),
        "--model_dir", str(p["hf"]), "--output_dir", str(p["checkpoint"]), "--dtype", args.dtype,
        "--tp_size", str(args.tp_size), "--pp_size", str(args.pp_size), "--workers", str(world),
    ]


def build_command(args: argparse.Namespace) -> list[str]:
    p = paths(args)
    on = lambda flag: "enable" if flag else "disable"  # noqa: E731
    cmd = [
        "trtllm-build", "--checkpoint_dir", str(p["checkpoint"]), "--output_dir", str(p["engine"]),
        "--max_batch_size", str(args.max_batch_size), "--max_input_len", str(args.max_input_len),
        "--max_seq_len", str(args.max_seq_len), "--max_num_tokens", str(args.max_num_tokens),
        "--kv_cache_type", "paged" if args.paged_kv_cache else "continuous",
        "--multiple_profiles", on(args.multiple_profiles),
        "--gemm_plugin", "auto", "--gpt_attention_plugin", "auto",
        "--remove_input_padding", "enable", "--context_fmha", "enable",
        # trtllm-build puts rank r on GPU r % workers (TensorRT-LLM commands/build.py parallel_build),
        # so parallel workers never exceed the GPUs of the build pod.
        "--workers", str(min(args.tp_size * args.pp_size, args.gpus or args.tp_size * args.pp_size)),
    ]
    if args.paged_kv_cache:
        # Paged context FMHA is what lets the backend chunk long prompts and reuse KV blocks.
        cmd += ["--use_paged_context_fmha", "enable"]
    return cmd


def fill_values(args: argparse.Namespace) -> dict[str, dict[str, str]]:
    """Template model -> placeholder values for the image's tools/fill_template.py."""
    p = paths(args)
    batch = str(args.max_batch_size)
    tokenizer, engine = str(p["staged_tokenizer"]), str(p["staged_engine"])
    # Tensors in the model's activation precision (FP8 engines keep bfloat16 activations).
    activations = "TYPE_FP16" if args.dtype == "float16" else "TYPE_BF16"
    return {
        "ensemble": {"triton_max_batch_size": batch, "logits_datatype": "TYPE_FP32"},
        "preprocessing": {
            "tokenizer_dir": tokenizer, "engine_dir": engine, "triton_max_batch_size": batch,
            "preprocessing_instance_count": "1", "max_queue_delay_microseconds": "0", "max_queue_size": "0",
        },
        "postprocessing": {
            "tokenizer_dir": tokenizer, "triton_max_batch_size": batch, "postprocessing_instance_count": "1",
            "skip_special_tokens": "True",
        },
        "tensorrt_llm": {
            "triton_backend": "tensorrtllm", "triton_max_batch_size": batch, "decoupled_mode": "true",
            "engine_dir": engine, "tokenizer_dir": tokenizer, "batching_strategy": "inflight_fused_batching",
            "max_beam_width": "1", "kv_cache_free_gpu_mem_fraction": str(args.kv_cache_free_gpu_mem_fraction),
            "exclude_input_in_output": "true", "enable_chunked_context": "true" if args.paged_kv_cache else "false",
            "encoder_input_features_data_type": activations, "prompt_embedding_table_data_type": activations,
            "logits_datatype": "TYPE_FP32",
            "max_queue_delay_microseconds": "0", "max_queue_size": "0",
        },
    }


def fill_command(config_path: Path, values: dict[str, str]) -> list[str]:
    escape = lambda v: v.replace("\\", "\\\\").replace(",", "\\,").replace(":", "\\:")  # noqa: E731
    subs = ",".join(f"{k}:{escape(v)}" for k, v in sorted(values.items()))
    return ["python3", str(APP_DIR / "tools" / "fill_template.py"), "-i", str(config_path), subs]


def repository_model_dir(args: argparse.Namespace, template: str) -> Path:
    name = args.served_model_name if template == "ensemble" else template
    return paths(args)["repository"] / name


def plan(args: argparse.Namespace, family: str) -> list[tuple[str, str]]:
    """(step, what it runs) in order: shell commands as one shell line, Python calls as a call."""
    p = paths(args)
    steps: list[tuple[str, str]] = [
        ("download", f"huggingface_hub.snapshot_download(repo_id={args.hf_model_id!r}, "
                     f"revision={args.hf_revision!r}, local_dir={str(p['hf'])!r}, "
                     f"allow_patterns={DOWNLOAD_PATTERNS!r}, ignore_patterns={DOWNLOAD_IGNORE!r})"),
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
    return steps


# --------------------------------------------------------------------------- running it

def log(message: str) -> None:
    print(f"[build_engine {time.strftime('%H:%M:%S')}] {message}", flush=True)


def run(cmd: list[str]) -> None:
    log("$ " + shlex.join(cmd))
    subprocess.run(cmd, check=True)


def download(args: argparse.Namespace) -> Path:
    from huggingface_hub import snapshot_download  # in the TRT-LLM image; HF_TOKEN comes from the env

    target = paths(args)["hf"]
    snapshot_download(repo_id=args.hf_model_id, revision=args.hf_revision, local_dir=str(target),
                      allow_patterns=DOWNLOAD_PATTERNS, ignore_patterns=DOWNLOAD_IGNORE)
    return target


def detect_family(hf_dir: Path) -> str:
    model_type = json.loads((hf_dir / "config.json").read_text()).get("model_type", "")
    if model_type not in CONVERTERS:
        raise SystemExit(f"config.json model_type {model_type!r} has no converter here; known: {sorted(CONVERTERS)}. "
                         "Add it to CONVERTERS in model_repository/trtllm/build_engine.py")
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


def fill_repository(args: argparse.Namespace) -> None:
    values = fill_values(args)
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
        if template == "ensemble":
            # The ensemble is the entry point: serve it under the stack's model name.
            text = re.sub(r'^name:\s*"ensemble"', f'name: "{args.served_model_name}"', text, count=1, flags=re.M)
            config.write_text(text)
            (dst / "1").mkdir(exist_ok=True)
        left = unfilled_placeholders(text)
        if left:
            raise SystemExit(f"{config}: placeholders {left} are still unfilled; extend fill_values()")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.dry_run:
        family = args.model_family if args.model_family != "auto" else "<model_type from config.json>"
        print(json.dumps({"served_model_name": args.served_model_name, "cache_key": args.cache_key,
                          "output_dir": args.output_dir, "stage_dir": args.stage_dir}))
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
    family = args.model_family if args.model_family != "auto" else detect_family(hf_dir)

    for step, cmd in (("convert", convert_command(args, family)), ("build", build_command(args))):
        started = time.monotonic()
        run(cmd)
        timings[f"{step}_s"] = round(time.monotonic() - started, 1)
    shutil.rmtree(paths(args)["checkpoint"], ignore_errors=True)  # free the scratch disk before upload

    tokenizer_files = copy_tokenizer(args)
    fill_repository(args)
    (out / "build.json").write_text(json.dumps({
        "cache_key": args.cache_key, "hf_model_id": args.hf_model_id, "hf_revision": args.hf_revision,
        "served_model_name": args.served_model_name, "model_family": family, "dtype": args.dtype,
        "tp_size": args.tp_size, "pp_size": args.pp_size, "max_batch_size": args.max_batch_size,
        "max_input_len": args.max_input_len, "max_seq_len": args.max_seq_len,
        "max_num_tokens": args.max_num_tokens, "paged_kv_cache": args.paged_kv_cache,
        "multiple_profiles": args.multiple_profiles, "tokenizer_files": tokenizer_files,
        "image": os.environ.get("TRITON_IMAGE", ""), "timings": timings,
    }, indent=2) + "\n")
    log(f"done: {out} ({timings})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
