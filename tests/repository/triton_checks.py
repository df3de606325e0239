"""Checks a Triton server makes when it loads a model repository, in Python.

- parse_model_config: text_format into Triton's ModelConfig proto (the one tritonclient ships):
  unknown fields, wrong enums and type errors fail, as in the server.
- ensemble_errors: the ensemble validation of triton-inference-server/core r25.12
  src/ensemble_scheduler/ensemble_utils.cc (ValidateEnsembleConfig / ValidateTensorMapping /
  ValidateTensorConsistency): every input_map key is an input of the composing model, every
  non-optional input of it is mapped (exactly once), every output_map key is one of its outputs,
  a tensor seen twice has the same data type and compatible dims (equal, or -1 on either side,
  also when compared with the batch dimension added), and no composing model allows a smaller
  max_batch_size than the ensemble. Error texts follow the server's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def model_config_pb2():
    import pytest

    return pytest.importorskip(
        "tritonclient.grpc.model_config_pb2",
        reason="tritonclient (requirements-local.txt) ships Triton's ModelConfig proto",
    )


def parse_model_config(text: str) -> Any:
    from google.protobuf import text_format

    return text_format.Parse(text, model_config_pb2().ModelConfig())


def load_repository(repository: Path) -> dict[str, Any]:
    return {p.parent.name: parse_model_config(p.read_text()) for p in sorted(repository.glob("*/config.pbtxt"))}


def _compare_dims_with_wildcard(a: list[int], b: list[int]) -> bool:
    # triton-inference-server/common model_config_utils CompareDimsWithWildcard
    return len(a) == len(b) and all(x == y or x == -1 or y == -1 for x, y in zip(a, b))


class _Node:
    def __init__(self, model: str, batching: bool, data_type: int, dims: list[int]):
        self.model, self.data_type, self.dims = model, data_type, list(dims)
        self.full_dims = ([-1] if batching else []) + list(dims)


def _consistent(lhs: _Node, rhs: _Node, where: str) -> str | None:
    pb2 = model_config_pb2()
    if lhs.data_type != rhs.data_type:
        return (
            f"{where}inconsistent data type: {pb2.DataType.Name(lhs.data_type)} is inferred from model "
            f"{lhs.model} while {pb2.DataType.Name(rhs.data_type)} is inferred from model {rhs.model}"
        )
    if not (
        _compare_dims_with_wildcard(lhs.dims, rhs.dims) or _compare_dims_with_wildcard(lhs.full_dims, rhs.full_dims)
    ):
        return (
            f"{where}inconsistent shape: {lhs.full_dims} is inferred from model {lhs.model} "
            f"while {rhs.full_dims} is inferred from model {rhs.model}"
        )
    return None


def ensemble_errors(name: str, ensemble: Any, models: dict[str, Any]) -> list[str]:
    """What Triton would reject in `ensemble` (a ModelConfig), given the repository's other models."""
    errors: list[str] = []
    batching = ensemble.max_batch_size > 0
    tensors: dict[str, _Node] = {}
    for t in list(ensemble.input) + list(ensemble.output):
        dims = list(t.reshape.shape) if t.HasField("reshape") else list(t.dims)
        tensors.setdefault(t.name, _Node(name, batching, t.data_type, dims))

    def connect(tensor: str, node: _Node) -> None:
        """The first use of an ensemble tensor fixes its type and shape; every later one must agree."""
        if tensor not in tensors:
            tensors[tensor] = node
        elif problem := _consistent(tensors[tensor], node, f"in ensemble {name}, ensemble tensor {tensor}: "):
            errors.append(problem)

    for step in ensemble.ensemble_scheduling.step:
        model = models.get(step.model_name)
        if model is None:
            errors.append(f"ensemble {name}: step model {step.model_name} is not in the repository")
            continue
        if model.max_batch_size != 0 and model.max_batch_size < ensemble.max_batch_size:
            errors.append(
                f"ensemble {name} allows maximum batch size {ensemble.max_batch_size}, but it contains "
                f"model {step.model_name} which only allows maximum batch size to be {model.max_batch_size}"
            )
        step_batching = model.max_batch_size > 0
        inputs = {i.name: i for i in model.input}
        outputs = {o.name: o for o in model.output}
        for key, tensor in step.input_map.items():
            if key not in inputs:
                errors.append(
                    f"in ensemble {name}, ensemble tensor {tensor} is mapping to non-existing input "
                    f"{key} in model {step.model_name}"
                )
        for model_input in model.input:
            mapped = [t for k, t in step.input_map.items() if k == model_input.name]
            if not mapped and not model_input.optional:
                errors.append(
                    f"in ensemble {name}, input {model_input.name} in model {step.model_name} "
                    "is not mapped to any ensemble tensors"
                )
            for tensor in mapped:
                connect(tensor, _Node(step.model_name, step_batching, model_input.data_type, list(model_input.dims)))
        for key, tensor in step.output_map.items():
            if key not in outputs:
                errors.append(
                    f"in ensemble {name}, ensemble tensor {tensor} is mapped from non-existing output "
                    f"{key} in model {step.model_name}"
                )
                continue
            out = outputs[key]
            connect(tensor, _Node(step.model_name, step_batching, out.data_type, list(out.dims)))
    return errors
