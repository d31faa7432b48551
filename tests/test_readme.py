"""The README is a front page: short, its relative links (and those of docs/) resolve, and it
names the test command CI runs."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MAX_README_LINES = 250

# [text](target) and ![alt](target); link text may hold `code` with brackets-free content
_LINK = re.compile(r"!?\[(?:[^\]`]|`[^`]*`)*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.MULTILINE | re.DOTALL)
_EXTERNAL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")  # http:, https:, mailto:, ...


def relative_links(text: str) -> list[str]:
    """Relative link targets of a markdown text, anchors removed; fenced code is skipped."""
    targets = []
    for match in _LINK.finditer(_FENCE.sub("", text)):
        target = match.group(1)
        if _EXTERNAL.match(target) or target.startswith("#"):
            continue
        path = target.split("#", 1)[0]
        if path:
            targets.append(path)
    return targets


def broken_links(md_file: Path) -> list[str]:
    """The relative links of ``md_file`` whose target (resolved from its directory) is missing."""
    return [
        t
        for t in relative_links(md_file.read_text(encoding="utf-8"))
        if not (md_file.parent / t).exists()
    ]


def ci_test_commands(ci_script: str) -> list[str]:
    """The `make <target>` and `pytest` command lines of CI's script, as written, in order."""
    commands = []
    for raw in ci_script.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        words = shlex.split(line)
        if words[0] == "make" or "pytest" in words:
            commands.append(line)
    return commands


def test_readme_is_a_front_page() -> None:
    n = len(README.read_text(encoding="utf-8").splitlines())
    assert n <= MAX_README_LINES, (
        f"README.md has {n} lines (at most {MAX_README_LINES}); move reference material to docs/ "
        "and measured results to docs/results/"
    )


def test_relative_links_resolve() -> None:
    files = [README, *sorted((ROOT / "docs").rglob("*.md"))]
    broken = {str(f.relative_to(ROOT)): b for f in files if (b := broken_links(f))}
    assert not broken, f"relative links to missing paths: {broken}"


def test_readme_names_the_test_command_ci_runs() -> None:
    commands = ci_test_commands((ROOT / ".ci" / "run").read_text(encoding="utf-8"))
    assert commands, ".ci/run calls no `make` target and no pytest"
    readme = README.read_text(encoding="utf-8")
    missing = [c for c in commands if c not in readme]
    assert not missing, f"README.md does not name the command(s) CI runs: {missing}"


def test_the_checks_can_fail(tmp_path: Path) -> None:
    page = tmp_path / "docs" / "page.md"
    page.parent.mkdir()
    (tmp_path / "here.md").write_text("x")
    page.write_text(
        "[ok](../here.md) [gone](../missing.md#part) ![img](pic.png) [web](https://x.org/a.md)\n"
        "[anchor](#top)\n```\n[in code](nowhere.md)\n```\n",
        encoding="utf-8",
    )
    assert broken_links(page) == ["../missing.md", "pic.png"]
    assert ci_test_commands("set -e\ncd x  # make test\nmake test\nmake test-slow\n") == [
        "make test",
        "make test-slow",
    ]
    assert ci_test_commands(".venv/bin/python -m pytest -m 'not slow'\n") == [
        ".venv/bin/python -m pytest -m 'not slow'"
    ]
