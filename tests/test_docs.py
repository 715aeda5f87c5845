"""The documentation runs: every ```python block of the getting-started page, of the
tutorials and of any other page that shows Python is executed, page by page, so a
failing example fails the suite.

A page's blocks run in order in one fresh namespace, in a temporary working directory
(what a page writes stays there). A block that needs data fetched beforehand is marked on
the page by an HTML comment on the line before its fence, e.g. ``<!-- docs: needs obd -->``
(the Open Bandit Dataset sample, fetched by ``promobandit datasets fetch obd``; CI
fetches it before the tests). Where that data is absent the page stops at the block and
the test is skipped with the reason; everywhere else it runs. Warnings are errors, as in
the rest of the suite: a page that shows one catches it in its own code.

The site itself (links, the API reference) is built by ``mkdocs build --strict`` in CI;
here the navigation is checked against the files.
"""

from __future__ import annotations

import dataclasses
import os
import re
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

import promobandit

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PACKAGE_PARENT = str(Path(promobandit.__file__).resolve().parents[1])
TUTORIALS = ["getting-started.md", *sorted(
    str(p.relative_to(DOCS)) for p in (DOCS / "tutorials").glob("*.md"))]

FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<info>[^\n`]*)\n(?P<body>.*?)^(?P=indent)```[ \t]*$",
                   re.MULTILINE | re.DOTALL)
MARK = re.compile(r"<!--\s*docs:\s*needs\s+(?P<what>[\w-]+)\s*-->\s*$")


@dataclasses.dataclass(frozen=True)
class Block:
    """One executable code block: where it starts on the page (1-based line of its first
    code line), its code, and what it needs ("" for nothing)."""

    line: int
    code: str
    needs: str


def python_blocks(text: str) -> list[Block]:
    """The ```python blocks of a Markdown page, in order (other languages are shown, not
    run), each with the requirement marked on the line before its fence."""
    blocks = []
    for m in FENCE.finditer(text):
        if m.group("info").strip().split(" ")[0] != "python":
            continue
        before = text[:m.start()].rstrip("\n").splitlines()
        mark = MARK.search(before[-1]) if before else None
        first = text.count("\n", 0, m.start("body")) + 1
        code = textwrap.dedent(m.group("body"))
        blocks.append(Block(first, code, mark.group("what") if mark else ""))
    return blocks


# Every page with python code runs (the API reference has none of its own): the getting
# started page and every tutorial, and the concept pages that show code.
EXECUTED = sorted({*TUTORIALS, *(
    str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md")
    if python_blocks(p.read_text(encoding="utf-8")))})


def _obd_present() -> bool:
    from promobandit.datasets import is_fetched

    return is_fetched()


# What a mark may name: a check that the requirement is met, and the reason to skip.
REQUIREMENTS: dict[str, tuple[Callable[[], bool], str]] = {
    "obd": (_obd_present, "the Open Bandit Dataset sample is not fetched here "
                          "(promobandit datasets fetch obd; CI fetches it)"),
}


class DocsExampleError(AssertionError):
    """A code block of a page failed; the message names the page and the block's line."""


def run_page(page: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    """Executes the page's python blocks in order in one fresh namespace with `workdir`
    as the working directory; returns how many ran. Skips (pytest.skip) at the first
    block whose requirement is not met. Raises DocsExampleError naming the failing block."""
    blocks = python_blocks(page.read_text(encoding="utf-8"))
    namespace: dict[str, object] = {"__name__": "__main__"}
    monkeypatch.chdir(workdir)
    # Commands a page starts (python -m promobandit ...) import the package under test.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        p for p in (PACKAGE_PARENT, os.environ.get("PYTHONPATH", "")) if p))
    for i, block in enumerate(blocks):
        if block.needs:
            if block.needs not in REQUIREMENTS:
                raise DocsExampleError(f"{page.name}:{block.line}: unknown requirement "
                                       f"{block.needs!r}; known: {sorted(REQUIREMENTS)}")
            present, reason = REQUIREMENTS[block.needs]
            if not present():
                pytest.skip(f"{page.name}:{block.line} and after: {reason}")
        where = f"{page.name}:{block.line}"
        try:
            exec(compile(block.code, where, "exec"), namespace)
        except Exception as exc:
            raise DocsExampleError(f"{where}: block {i + 1} of {len(blocks)} failed: "
                                   f"{type(exc).__name__}: {exc}") from exc
    return len(blocks)


@pytest.mark.parametrize("name", EXECUTED)
def test_page_examples_run(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert run_page(DOCS / name, tmp_path, monkeypatch) > 0, f"{name} has no python block"


def test_every_tutorial_has_code_that_runs() -> None:
    assert len(TUTORIALS) >= 6
    for name in TUTORIALS:
        assert python_blocks((DOCS / name).read_text(encoding="utf-8")), name


def test_the_checker_fails_on_a_broken_block(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    page = tmp_path / "planted.md"
    page.write_text(textwrap.dedent('''\
        # A page

        ```python
        total = 1 + 1
        ```

        Shown, not run:

        ```bash
        exit 1
        ```

        ```python
        assert total == 3, "the page is wrong"
        ```
        '''))
    blocks = python_blocks(page.read_text())
    assert [b.line for b in blocks] == [4, 14] and all(not b.needs for b in blocks)
    with pytest.raises(DocsExampleError, match=r"planted\.md:14: block 2 of 2 failed: "
                                               r"AssertionError: the page is wrong"):
        run_page(page, tmp_path, monkeypatch)


def test_marks_are_read_and_unknown_ones_refused(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    page = tmp_path / "marked.md"
    page.write_text("<!-- docs: needs obd -->\n```python\nx = 1\n```\n\n"
                    "<!-- docs: needs a-crystal-ball -->\n```python\ny = 2\n```\n")
    assert [b.needs for b in python_blocks(page.read_text())] == ["obd", "a-crystal-ball"]
    only_unknown = tmp_path / "unknown.md"
    only_unknown.write_text("<!-- docs: needs a-crystal-ball -->\n```python\ny = 2\n```\n")
    with pytest.raises(DocsExampleError, match="unknown requirement 'a-crystal-ball'"):
        run_page(only_unknown, tmp_path, monkeypatch)


def test_the_obd_tutorial_marks_every_block_that_reads_the_sample() -> None:
    blocks = python_blocks((DOCS / "tutorials" / "open-bandit-dataset.md").read_text())
    reading = [b for b in blocks if "obd" in b.code.lower()]
    assert reading and all(b.needs == "obd" for b in reading)


def nav_files(config_text: str) -> list[str]:
    """The page files listed in mkdocs.yml's `nav` (a block of `- Title: file.md` items,
    nested sections allowed), in order. Read as text: the nav is a plain list, and this
    keeps the test free of a YAML dependency."""
    lines = config_text.splitlines()
    start = lines.index("nav:")
    files = []
    for line in lines[start + 1:]:
        if line and not line[0].isspace():
            break  # the next top-level key
        item = re.fullmatch(r"\s*-\s*(?:[^:]+:\s*)?(\S+\.md)\s*", line)
        if item:
            files.append(item.group(1))
    return files


def test_every_nav_page_exists_and_every_page_is_in_the_nav() -> None:
    listed = nav_files((ROOT / "mkdocs.yml").read_text())
    assert "index.md" in listed and "reference/service.md" in listed
    assert len(listed) == len(set(listed)), "a page is listed twice"
    missing = [f for f in listed if not (DOCS / f).is_file()]
    assert not missing, f"mkdocs.yml lists pages that do not exist: {missing}"
    pages = {str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md")}
    assert pages == set(listed), f"pages outside the nav: {sorted(pages - set(listed))}"
    for name in TUTORIALS:
        assert name in listed


def test_included_files_exist() -> None:
    for page in DOCS.rglob("*.md"):
        for target in re.findall(r'^--8<-- "([^"]+)"\s*$', page.read_text(), re.MULTILINE):
            assert (ROOT / target).is_file(), f"{page.name} includes a missing {target}"
