"""README.md and docs/: size, links, figures rendered from results/*.json, a runnable tour."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
LINKED = [*PAGES, *sorted((ROOT / "results").glob("*.md"))]  # results/history.md links too
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.M | re.S)
TOUR_HEADING = re.compile(r"^## .*\btour\b", re.I | re.M)


def _render_docs():
    spec = importlib.util.spec_from_file_location("render_docs", ROOT / "scripts/render_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _prose(text: str) -> str:
    """The text without fenced code blocks and inline code (links there are not links)."""
    return re.sub(r"`[^`\n]*`", "", FENCE.sub("", text))


def _links(path: Path) -> list[str]:
    return LINK.findall(_prose(path.read_text()))


def _anchors(path: Path) -> set[str]:
    """GitHub's heading anchors of a Markdown file (lower case, punctuation dropped)."""
    seen: dict[str, int] = {}
    out = set()
    for line in FENCE.sub("", path.read_text()).splitlines():
        match = re.match(r"#{1,6} +(.*?) *#* *$", line)
        if not match:
            continue
        slug = re.sub(r"[^\w\- ]", "", match[1].lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def test_readme_is_a_guide_of_at_most_15_kb() -> None:
    assert README.stat().st_size <= 15_000, f"README.md is {README.stat().st_size} bytes"


def test_there_are_doc_pages() -> None:
    names = {p.name for p in PAGES}
    for page in ("architecture", "format", "pruning", "kernels", "compile", "tuning",
                 "deployment", "speech", "results"):
        assert f"{page}.md" in names


def test_link_extraction_ignores_code_and_keeps_anchors(tmp_path: Path) -> None:
    page = tmp_path / "p.md"
    page.write_text("# A `b` (c)\n[x](docs/a.md#sec) `[y](no.md)`\n```\n[z](no.md)\n```\n")
    assert _links(page) == ["docs/a.md#sec"]
    assert _anchors(page) == {"a-b-c"}


@pytest.mark.parametrize("page", LINKED, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve_inside_the_repository(page: Path) -> None:
    bad = []
    for link in _links(page):
        if re.match(r"[a-z][a-z0-9+.-]*:", link):  # http:, mailto: ...: not a file
            continue
        target, _, anchor = link.partition("#")
        path = (page.parent / target).resolve() if target else page
        if not path.is_relative_to(ROOT):
            bad.append(f"{link}: leaves the repository")
        elif not path.exists():
            bad.append(f"{link}: no such file")
        elif anchor and path.suffix == ".md" and anchor not in _anchors(path):
            bad.append(f"{link}: no heading #{anchor} in {path.relative_to(ROOT)}")
    assert not bad, f"{page.relative_to(ROOT)}: " + "; ".join(bad)


def test_rendered_figures_are_up_to_date(capsys: pytest.CaptureFixture[str]) -> None:
    status = _render_docs().main(["--check"])
    assert status == 0, f"stale blocks, run python scripts/render_docs.py:\n{capsys.readouterr()}"


def _root_with(tmp_path: Path, readme: str) -> Path:
    shutil.copytree(ROOT / "results", tmp_path / "results")
    (tmp_path / "README.md").write_text(readme)
    return tmp_path


def test_render_fills_a_stale_block_and_check_names_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    render = _render_docs()
    root = _root_with(tmp_path, "# t\n\n<!-- figures:demo -->\nold\n<!-- /figures:demo -->\nend\n")
    assert render.main(["--check", "--root", str(root)]) == 1
    assert "README.md: demo" in capsys.readouterr().out
    assert "old" in (root / "README.md").read_text()  # --check writes nothing
    assert render.main(["--root", str(root)]) == 0
    text = (root / "README.md").read_text()
    assert "old" not in text and text.endswith("<!-- /figures:demo -->\nend\n")
    demo = json.loads((ROOT / "results/demo.json").read_text())
    host = {r["build"]: r for r in demo if r["target"] == "host"}
    speedup = host["dense"]["us_per_frame"] / host["bspc"]["us_per_frame"]
    assert f"| {host['bspc']['per']:.2f} | {host['bspc']['us_per_frame']:.1f} |" in text
    assert f"| {speedup:.2f} |" in text
    assert render.main(["--check", "--root", str(root)]) == 0


def test_table1_block_follows_the_json(tmp_path: Path) -> None:
    render = _render_docs()
    root = _root_with(tmp_path, "<!-- figures:table1 -->\n<!-- /figures:table1 -->\n")
    records = json.loads((root / "results/table1.json").read_text())
    first = next(r for r in records if r["method"] == "bsp" and r["split"] == "test")
    first["per"] = first["per_dense"] + 0.5
    (root / "results/table1.json").write_text(json.dumps(records))
    assert render.main(["--root", str(root)]) == 0
    text = (root / "README.md").read_text()
    assert f"| {first['rate']:g} | {first['per']:.2f} |" in text
    assert "| 0.50 |" in text  # the BSP PER loss column


@pytest.mark.parametrize(
    ("readme", "message"),
    [
        ("<!-- figures:nope -->\n<!-- /figures:nope -->\n", "unknown block 'nope'"),
        ("<!-- figures:demo -->\nno end\n", "unclosed block(s) ['demo']"),
    ],
)
def test_render_refuses_bad_blocks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], readme: str, message: str
) -> None:
    root = _root_with(tmp_path, readme)
    assert _render_docs().main(["--root", str(root)]) == 1
    assert message in capsys.readouterr().err
    assert (root / "README.md").read_text() == readme


def test_render_names_a_missing_results_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _root_with(tmp_path, "<!-- figures:demo -->\n<!-- /figures:demo -->\n")
    (root / "results/demo.json").unlink()
    assert _render_docs().main(["--root", str(root)]) == 1
    assert "demo.json is missing" in capsys.readouterr().err


def _tour() -> str:
    text = README.read_text()
    heading = TOUR_HEADING.search(text)
    assert heading, "README.md has no '## ... tour' section"
    section = re.split(r"^## ", text[heading.end():], maxsplit=1, flags=re.M)[0]
    code = re.search(r"^```python\n(.*?)^```", section, re.M | re.S)
    assert code, "the tour section has no ```python block"
    return code[1]


def test_readme_tour_is_about_20_lines() -> None:
    lines = [line for line in _tour().splitlines() if line.strip()]
    assert len(lines) <= 30, len(lines)


def test_readme_tour_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    exec(compile(_tour(), "README.md (tour)", "exec"), {"__name__": "__tour__"})
    for artifact in ("bspc/index.json", "model.so", "model.so.json", "tuning-db"):
        assert (tmp_path / artifact).exists(), artifact
