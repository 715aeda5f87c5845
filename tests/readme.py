"""The README's sections and their code blocks, for tests that run what the README shows."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_section(title: str, text: str | None = None) -> str | None:
    """The section headed `title`, up to the next heading outside a code block (a
    `# comment` inside a block is not a heading); None when there is no such section."""
    if text is None:
        text = README.read_text(encoding="utf-8")
    lines: list[str] = []
    inside, fenced = False, False
    for line in text.splitlines(keepends=True):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        heading = not fenced and re.match(r"#+ ", line) is not None
        if heading and inside:
            break
        if heading and line.strip("# \n") == title:
            inside = True
            continue
        if inside:
            lines.append(line)
    return "".join(lines) if inside else None


def run_python_blocks(section: str, name: str = "README.md") -> dict:
    """Executes the section's ```python blocks in order in one namespace; returns it."""
    blocks = [textwrap.dedent(b) for b in
              re.findall(r"^```python\n(.*?)^```", section, re.MULTILINE | re.DOTALL)]
    assert blocks, "the section shows no python block"
    ns: dict = {"__name__": "__main__"}
    for block in blocks:
        exec(compile(block, name, "exec"), ns)
    return ns
