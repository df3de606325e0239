"""The ```bash blocks of README.md and docs/*.md, and the commands in them.

A block preceded by the line `<!-- runnable -->` (blank lines between are allowed) runs on this
machine against a local `tritonllm serve`: tests/e2e/test_doc_commands.py runs its commands.
Every other block needs AWS, Pulumi or a cluster: it is only checked to parse
(tests/unit/test_docs.py).
"""

from __future__ import annotations

import re
import shlex
import textwrap
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUNNABLE_MARK = "<!-- runnable -->"
FENCE = re.compile(r"^(\s*)```(\S*)\s*$")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    runnable: bool
    text: str  # dedented, without the fences

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}"


@dataclass(frozen=True)
class Command:
    block: Block
    line: int  # 1-based line in the file where the command starts
    text: str  # one shell command, continuation lines joined as written

    @property
    def where(self) -> str:
        return f"{self.block.path.relative_to(REPO)}:{self.line}"

    def argv(self) -> list[str]:
        """The words as the shell splits them (comments dropped, $(...) left as text); [] when the
        quoting is broken (the block's `bash -n` test reports that)."""
        return _words(self.text) or []


def _words(text: str) -> list[str] | None:
    try:
        return shlex.split(text.replace("\\\n", ""), comments=True)
    except ValueError:
        return None


def doc_files() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]


def bash_blocks(path: Path) -> list[Block]:
    lines = path.read_text().splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent, lang = opening.groups()
        end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
        if lang == "bash":
            before = [ln.strip() for ln in lines[:i] if ln.strip()]
            runnable = bool(before) and before[-1] == RUNNABLE_MARK
            body = textwrap.dedent("\n".join(lines[i + 1 : end])) + "\n"
            blocks.append(Block(path, i + 1, runnable, body))
        i = end + 1
    return blocks


def all_blocks() -> list[Block]:
    return [b for path in doc_files() for b in bash_blocks(path)]


def commands(block: Block) -> list[Command]:
    """One entry per shell command: lines ending in a backslash joined with the next."""
    out: list[Command] = []
    pending: list[str] = []
    start = 0
    for n, line in enumerate(block.text.splitlines()):
        if not pending:
            start = n
        pending.append(line)
        if line.rstrip().endswith("\\"):
            continue
        text = "\n".join(pending)
        pending = []
        if _words(text) != []:  # not a blank or comment-only line
            out.append(Command(block, block.line + 1 + start, text))
    assert not pending, f"{block.where}: the block ends in a line continuation"
    return out


def tritonllm_argv(command: Command) -> list[str] | None:
    """The arguments after `python -m tritonllm`, or None when the command is not one."""
    words = command.argv()
    for i in range(len(words) - 2):
        if words[i].endswith("python") and words[i + 1 : i + 3] == ["-m", "tritonllm"]:
            return words[i + 3 :]
    return None
