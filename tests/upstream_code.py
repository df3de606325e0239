"""Run pieces of upstream Python sources from the reference folder, where a test needs upstream's own
check rather than our reading of it.

The files live in the reference folder (tests/k8s_schema.py REFERENCE_DIR) under the path they have
upstream, prefixed by a folder per kind and the repository and tag, e.g.

    triton-openai/server-r25.12/python/openai/openai_frontend/engine/utils/triton.py
    trtllm-convert/TensorRT-LLM-v1.1.0/examples/models/core/gemma/convert_checkpoint.py

They are not in the offline copy yet; until they are, the tests that use them fall back to a port or a
transcription of the part they need, with its citation (file, tag or commit, line). Nothing here is
upstream code: only a loader for it.

- `reference_file(rel)`: the file, or None when the reference folder does not hold it.
- `function_from_source(path, name, namespace)`: one top-level function of a module compiled on its
  own (the module's imports need not be importable), its globals taken from `namespace`.
- `run_argument_parser(path, argv)`: the module executed with every non-standard-library import
  replaced by a stub, then its `parse_arguments()` called with `argv` as the command line: the
  real upstream argparse definitions, so unknown or missing arguments exit as they would in the image.
"""

from __future__ import annotations

import argparse
import ast
import sys
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

from tests.k8s_schema import REFERENCE_DIR


def reference_file(rel: str) -> Path | None:
    path = REFERENCE_DIR / rel
    return path if path.is_file() else None


def function_from_source(path: Path, name: str, namespace: dict[str, Any]) -> Callable[..., Any]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[ast.stmt] = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name]
    if not found:
        raise LookupError(f"{path} defines no top-level function {name!r}")
    module = ast.Module(body=found, type_ignores=[])
    scope = dict(namespace)
    exec(compile(module, str(path), "exec"), scope)  # noqa: S102 - upstream source from the reference folder
    function: Callable[..., Any] = scope[name]
    return function


def _imported_modules(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@contextmanager
def _stubbed_imports(modules: set[str]) -> Iterator[None]:
    """Every module outside the standard library (and its parent packages) as a MagicMock."""
    stubs: dict[str, Any] = {}
    for name in modules:
        if name.split(".")[0] in sys.stdlib_module_names:
            continue
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            stubs.setdefault(".".join(parts[:i]), mock.MagicMock(name=".".join(parts[:i])))
    with mock.patch.dict(sys.modules, stubs):
        yield


def run_argument_parser(path: Path, argv: list[str], parser_function: str = "parse_arguments") -> argparse.Namespace:
    """The upstream script's own parser on `argv`; argparse's SystemExit(2) when it refuses them."""
    source = path.read_text()
    tree = ast.parse(source, filename=str(path))
    module = types.ModuleType(f"upstream_{path.parent.name}_{path.stem}")
    module.__file__ = str(path)
    with _stubbed_imports(_imported_modules(tree)), mock.patch.object(sys, "argv", [str(path), *argv]):
        exec(compile(tree, str(path), "exec"), module.__dict__)  # noqa: S102 - not run as __main__
        namespace: argparse.Namespace = getattr(module, parser_function)()
    return namespace
