"""The documentation: README.md (the front page) and the MkDocs site in docs/ (mkdocs.yml).

The site builds with `mkdocs build --strict` (a broken link or anchor, or a page left out of the
nav, fails it), every page is in the nav, README links only to pages and anchors that exist, and
every ```bash block parses: `bash -n` for all of them, and each `python -m tritonllm ...` and
`make ...` command against the real argument parser and Makefile targets. The blocks marked
runnable are run for real by tests/e2e/test_doc_commands.py.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests import doc_blocks

REPO = doc_blocks.REPO
DOCS = REPO / "docs"


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--config-file",
            str(REPO / "mkdocs.yml"),
            "--site-dir",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, NO_MKDOCS_2_WARNING="1"),
    )
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    return out


def nav_pages() -> list[str]:
    def walk(node) -> list[str]:
        if isinstance(node, str):
            return [node]
        if isinstance(node, list):
            return [p for item in node for p in walk(item)]
        if isinstance(node, dict):
            return [p for value in node.values() for p in walk(value)]
        return []

    return walk(yaml.safe_load((REPO / "mkdocs.yml").read_text())["nav"])


def page_html(site: Path, page: str) -> str:
    stem = page[: -len(".md")]
    html = site / ("index.html" if stem == "index" else f"{stem}/index.html")
    return html.read_text()


def test_site_builds_strict_with_the_material_theme(site):
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text())
    assert config["theme"]["name"] == "material" and config["docs_dir"] == "docs"
    assert (site / "index.html").is_file()
    for page in nav_pages():
        assert "<h1" in page_html(site, page), page


def test_every_page_in_docs_is_in_the_nav_once():
    pages = sorted(str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md"))
    nav = nav_pages()
    assert sorted(nav) == pages, f"nav {sorted(nav)} != pages in docs/ {pages}"
    assert len(set(nav)) == len(nav), "a page is in the nav twice"


README_LINK = re.compile(r"\]\((docs/[^)#\s]+)(?:#([^)\s]+))?\)")


def test_readme_links_to_docs_pages_and_anchors_that_exist(site):
    readme = (REPO / "README.md").read_text()
    links = README_LINK.findall(readme)
    assert links, "README links to no docs page"
    for target, anchor in links:
        page = target[len("docs/") :]
        assert (REPO / target).is_file(), f"README links to {target}, which does not exist"
        assert page in nav_pages(), f"README links to {target}, which is not in the site's nav"
        if anchor:
            assert f'id="{anchor}"' in page_html(site, page), f"README links to {target}#{anchor}: no such anchor"
    # the front page leads to every page of the site
    linked = {target[len("docs/") :] for target, _ in links}
    assert set(nav_pages()) - {"index.md"} <= linked, set(nav_pages()) - {"index.md"} - linked


def test_readme_is_a_front_page():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 260
    for heading in ("## The two commands", "## Architecture", "## Deploy in five steps", "## Documentation"):
        assert heading in readme


def _section(text: str, heading: str) -> str:
    return text.split(heading, 1)[1].split("\n## ", 1)[0].strip()


def test_the_two_commands_read_the_same_in_readme_and_on_the_site():
    readme = (REPO / "README.md").read_text()
    index = (DOCS / "index.md").read_text()
    assert _section(readme, "## The two commands") == _section(index, "## The two commands")


BLOCKS = doc_blocks.all_blocks()


@pytest.mark.parametrize("block", BLOCKS, ids=[b.where for b in BLOCKS])
def test_every_bash_block_parses(block):
    proc = subprocess.run(["bash", "-n"], input=block.text, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, f"{block.where}: bash -n: {proc.stderr}\n{block.text}"


TRITONLLM_COMMANDS = [c for b in BLOCKS for c in doc_blocks.commands(b) if doc_blocks.tritonllm_argv(c) is not None]


@pytest.mark.parametrize("command", TRITONLLM_COMMANDS, ids=[c.where for c in TRITONLLM_COMMANDS])
def test_every_tritonllm_command_takes_its_arguments(command, capsys):
    from tritonllm.__main__ import build_parser

    argv = doc_blocks.tritonllm_argv(command)
    try:
        build_parser().parse_args(argv)
    except SystemExit as exc:
        pytest.fail(
            f"{command.where}: `python -m tritonllm {' '.join(argv)}` is refused: "
            f"{capsys.readouterr().err.strip()} (exit {exc.code})"
        )


def _make_targets() -> set[str]:
    text = "\n".join(p.read_text() for p in [REPO / "Makefile", *sorted((REPO / "mk").glob("*.mk"))])
    return set(re.findall(r"^([A-Za-z0-9_.-]+):", text, flags=re.M))


MAKE_COMMANDS = [c for b in BLOCKS for c in doc_blocks.commands(b) if c.argv()[:1] == ["make"]]


@pytest.mark.parametrize("command", MAKE_COMMANDS, ids=[c.where for c in MAKE_COMMANDS])
def test_every_make_command_names_a_target(command):
    targets = [w for w in command.argv()[1:] if not w.startswith("-") and "=" not in w]
    assert targets, command.text
    assert set(targets) <= _make_targets(), f"{command.where}: no such make target in {targets}"


def test_runnable_blocks_are_marked():
    """The local examples are marked, so the e2e test runs them; AWS-only ones are not."""
    runnable = [b for b in BLOCKS if b.runnable]
    assert {b.path.name for b in runnable} >= {"README.md", "local.md", "openai.md"}
    for block in runnable:
        assert "pulumi" not in block.text and "kubectl" not in block.text, f"{block.where} needs AWS"
    texts = [c.text for b in runnable for c in doc_blocks.commands(b)]
    assert any("generate_stream" in t and '"stream": true' in t for t in texts)
    assert any("/v1/chat/completions" in t and '"stream": true' in t for t in texts)
    assert any('-u "$TRITONLLM_API_KEY"' in t and '"exclude_input_in_output": true' in t for t in texts)
