"""`python -m tritonllm nccl-test --stack multinode`: NCCL all-reduce across a multi-node model's group.

Renders (components/multinode.nccl_test_manifests) a LeaderWorkerSet of `nodes` pods on the model's
pool, with the model's SSH Secret and the multi-node serving image the stack built (its `multinodeImage`
output: the same libfabric, aws-ofi-nccl, NCCL and Open MPI serving uses, with nccl-tests built in), applies
it with kubectl (current
context: run the stack's `updateKubeconfigCommand` output first), follows the leader's log until
nccl-tests prints its summary, prints the bus bandwidth and the transport NCCL chose (OFI/EFA or
Socket), then deletes what it created. `--print-manifests` only prints the YAML.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--stack", default="multinode", help="stack whose Pulumi.<stack>.yaml to read (default multinode)"
    )
    parser.add_argument("--model", help="models[].name of the multi-node model (default: the only one)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds to wait for nodes, image pull and the run")
    parser.add_argument("--kubectl", default="kubectl", help="kubectl binary")
    parser.add_argument("--keep", action="store_true", help="leave the test LeaderWorkerSet in place")
    parser.add_argument("--print-manifests", action="store_true", help="print the manifests and exit")
    parser.add_argument(
        "--image",
        help="the multi-node serving image (default: the stack's multinodeImage output, read with `pulumi stack output`)",
    )


def load_model(stack: str, model_name: str | None):
    from components.config import SECRET_KEYS, parse_stack_config

    path = REPO_ROOT / f"Pulumi.{stack}.yaml"
    if not path.is_file():
        raise SystemExit(f"no stack file {path.name}")
    raw = (yaml.safe_load(path.read_text()) or {}).get("config") or {}
    values = {k.split(":", 1)[1]: v for k, v in raw.items() if k.startswith("tritonllm:")}
    cfg = parse_stack_config(values, set(SECRET_KEYS))  # secrets are not needed to render the test
    models = [m for m in cfg.models if m.multi_node and (model_name is None or m.name == model_name)]
    if len(models) != 1:
        names = [m.name for m in cfg.models if m.multi_node]
        raise SystemExit(
            f"stack {stack}: pick one multi-node model with --model (multi-node models: {names or 'none'})"
        )
    return cfg, models[0]


# NCCL names the net plugin it selected once per communicator and rank: "NCCL INFO Using network %s"
# (NCCL v2.30.7-1 src/init.cc; the same line since 2.x). aws-ofi-nccl's plugin is "Libfabric" (or
# "AWS Libfabric" with NCCL_NET="AWS Libfabric"); NCCL's own transports are "Socket" and "IB". A loaded
# plugin logs NET/OFI lines even when it then fails to initialise and NCCL falls back to Socket, so
# those lines say nothing about the network used. Which libfabric provider the plugin runs on is its
# "NET/OFI Selected provider is %s, fabric is %s (found %d nics)" (aws-ofi-nccl src/nccl_ofi_net.cpp).
NETWORK_LINE = re.compile(r"NCCL INFO Using network (.+?)\s*$")
OFI_NETWORKS = ("Libfabric", "AWS Libfabric")
OFI_PROVIDER = re.compile(r"NET/OFI Selected [Pp]rovider is ([^,\s]+)")


def transport(log: str) -> str:
    """Which network NCCL used, from its NCCL_DEBUG=INFO lines ("Using network ..."), every rank counted."""
    networks = [m.group(1) for line in log.splitlines() if (m := NETWORK_LINE.search(line))]
    if not networks:
        return "unknown (no 'NCCL INFO Using network' line: NCCL_DEBUG=INFO not set, or NCCL never initialised)"
    others = sorted({n for n in networks if n not in OFI_NETWORKS})
    if others:
        count = sum(n not in OFI_NETWORKS for n in networks)
        label = "TCP sockets" if others == ["Socket"] else "/".join(others)
        return f"{label} (EFA NOT used): 'Using network {others[0]}' on {count} of {len(networks)} rank communicators"
    providers = sorted(set(OFI_PROVIDER.findall(log)))
    if providers == ["efa"]:
        return "EFA (libfabric efa provider via aws-ofi-nccl)"
    found = ", ".join(providers) or "not logged"
    return f"libfabric provider {found} via aws-ofi-nccl (EFA NOT used unless the provider is efa)"


IMAGE_OUTPUT = "multinodeImage"  # __main__.py exports it when the stack has a multi-node model


def stack_image(stack: str, runner: Callable[..., subprocess.CompletedProcess]) -> str:
    """The multi-node serving image the stack built (`pulumi stack output multinodeImage`)."""
    result = runner(
        ["pulumi", "stack", "output", IMAGE_OUTPUT, "--stack", stack], capture_output=True, text=True, check=False
    )
    image = (result.stdout or "").strip()
    if result.returncode != 0 or not image:
        raise SystemExit(
            f"nccl-test: no {IMAGE_OUTPUT} output on stack {stack} (run `pulumi up` first, or pass --image): "
            f"{(result.stderr or '').strip()}"
        )
    return image


def run(
    args: argparse.Namespace,
    *,
    runner: Callable[..., subprocess.CompletedProcess] = subprocess.run,
    follow: Callable[[list[str]], Iterable[str]] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    out=None,
) -> int:
    from components.serving.builders import multinode

    out = out or sys.stdout
    cfg, model = load_model(args.stack, args.model)
    image = args.image or stack_image(args.stack, runner)
    manifests = multinode.nccl_test_manifests(model, cfg.site_of(model), image)
    text = yaml.safe_dump_all(manifests, sort_keys=False)
    if args.print_manifests:
        out.write(text)
        return 0
    kubectl, ns = args.kubectl, model.name
    leader = f"{multinode.NCCL_TEST_NAME}-0"
    runner([kubectl, "apply", "-f", "-"], input=text, text=True, check=True)
    try:
        deadline = time.monotonic() + args.timeout
        while True:  # the leader container must have started before its log can be followed
            phase = runner(
                [kubectl, "-n", ns, "get", "pod", leader, "-o", "jsonpath={.status.phase}"],
                capture_output=True,
                text=True,
            ).stdout.strip()
            if phase in ("Running", "Succeeded", "Failed"):
                break
            if time.monotonic() > deadline:
                print(
                    f"nccl-test: pod {ns}/{leader} not running after {args.timeout:.0f}s (phase {phase or 'none'})",
                    file=sys.stderr,
                )
                return 1
            sleep(5)
        lines = []
        stream = (follow or _follow)([kubectl, "-n", ns, "logs", "-f", f"pod/{leader}"])
        for line in stream:
            lines.append(line)
            out.write(line if line.endswith("\n") else line + "\n")
            if multinode.parse_bus_bandwidth(line) is not None:
                break
        log = "".join(lines)
        busbw = multinode.parse_bus_bandwidth(log)
        if busbw is None:
            print("nccl-test: the run ended without nccl-tests' 'Avg bus bandwidth' line", file=sys.stderr)
            return 1
        itype = multinode.instance_type(model, cfg.site_of(model))
        out.write(
            f"\nAvg bus bandwidth: {busbw:.2f} GB/s across {model.multi_node.nodes} x {itype.name} "
            f"({model.parallel_gpus} GPUs); transport: {transport(log)}\n"
        )
        return 0
    finally:
        if not args.keep:
            runner([kubectl, "delete", "--ignore-not-found", "-f", "-"], input=text, text=True, check=False)


def _follow(cmd: list[str]) -> Iterable[str]:
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        assert proc.stdout is not None
        try:
            yield from proc.stdout
        finally:
            proc.terminate()


def main(args: argparse.Namespace) -> int:
    return run(args)
