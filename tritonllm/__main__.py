"""Command-line entry point: `python -m tritonllm <command> ...`.

Each sub-command lives in its own module, which exposes
`add_arguments(parser)` and `main(args) -> int` (the process exit code).
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = {
    "serve": ("tritonllm.serve", "start a real Triton server on CPU with a local model repository"),
    "client": ("tritonllm.client", "send prompts to a Triton endpoint (local or EKS) and record the results"),
    "bench": ("tritonllm.bench", "load-test a Triton endpoint: TTFT, inter-token latency, throughput"),
    "check": (
        "tritonllm.check",
        "validate Pulumi.<stack>.yaml offline as the program does and say what `pulumi up` would create",
    ),
    "deploy": ("tritonllm.deploy", "preview / up / destroy / outputs of a Pulumi stack (Automation API)"),
    "loadtest": ("tritonllm.loadtest", "in-cluster load test of a deployed model (a Job), with the HPA's response"),
    "doctor": (
        "tritonllm.doctor",
        "will a stack's GPU node pools get their GPUs? instance type offerings and EC2 vCPU quotas per pool",
    ),
    "coldstart": (
        "tritonllm.coldstart",
        "add one replica of a model on a real cluster and print each start-up phase with its time",
    ),
    "nccl-test": (
        "tritonllm.nccl_test",
        "run NCCL all-reduce across a multi-node model's nodes and print the bus bandwidth",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tritonllm", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="{" + ",".join(COMMANDS) + "}")
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(command_parser)
        command_parser.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args._module.main(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
