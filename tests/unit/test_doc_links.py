"""The documents point at things that exist: files, headings, benchmark modules.

For README.md, BENCHMARKS.md, ARCHITECTURE.md, benchmarks/README.md and docs/*.md:

- a markdown link to a relative path must reach a file or folder (from the document's own folder, as GitHub
  resolves it), and its `#anchor`, into a markdown file, must be one of that file's headings (GitHub's slug);
- a path in backticks (inline or a fenced block) that looks like one of the repository's must exist: it starts
  with benchmarks/, src/, docs/, recipes/ or tests/, or it has a folder and ends with .py, .sh, .json, .txt,
  .md or .yaml. It is looked up from the repository root, or from src/ or src/nertune/ (module paths such as
  `training/recipe.py` are written from the package). Not repository paths, so not checked: absolute paths,
  URLs, the git-ignored outputs (runs/, .gpu_bench/ ...), and names with a placeholder (`<run>.json`,
  `{json,log}`, `*`, `$OUT/...`, `…`);
- `python -m benchmarks.X.Y` must name a benchmark module that exists;
- no document mentions ANCHORS.md (there is no such file).

Every failure is collected, then reported at once.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NAMED = ("README.md", "BENCHMARKS.md", "ARCHITECTURE.md", "benchmarks/README.md")
PREFIXES = ("benchmarks/", "src/", "docs/", "recipes/", "tests/")
EXTENSIONS = (".py", ".sh", ".json", ".txt", ".md", ".yaml")
BASES = (ROOT, ROOT / "src", ROOT / "src" / "nertune")
PLACEHOLDER = re.compile(r"[<>{}*$…\[\]|]|\.\.\.")
FENCE = re.compile(r"^\s*(```|~~~)")
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)|!\[[^\]]*\]\(([^)\s]+)\)")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")
MODULE = re.compile(r"-m\s+(benchmarks(?:\.\w+)+)")


def documents() -> list[Path]:
    return [ROOT / name for name in NAMED] + sorted((ROOT / "docs").glob("*.md"))


def split_fenced(text: str) -> tuple[list[str], list[str]]:
    """(prose lines, fenced-code lines) of a markdown text."""
    prose, code, fenced = [], [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        (code if fenced else prose).append(line)
    return prose, code


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup dropped, lowercase, punctuation dropped (not - or _), spaces -> -."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading's anchor in a markdown file, duplicates numbered as GitHub does (-1, -2, ...)."""
    prose, _ = split_fenced(path.read_text(encoding="utf-8"))
    seen: dict[str, int] = {}
    found = set()
    for line in prose:
        match = re.match(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        base = slug(match.group(1))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def ignored_folders() -> tuple[str, ...]:
    """Top folders .gitignore names (run outputs, environments): nothing in them is the repository's."""
    lines = (ROOT / ".gitignore").read_text().splitlines()
    return tuple(line.strip("/") + "/" for line in lines if line.endswith("/") and "*" not in line)


def looks_like_repo_path(token: str) -> bool:
    if not token or "://" in token or token.startswith(("/", "~")) or PLACEHOLDER.search(token):
        return False
    if token.startswith(ignored_folders()):
        return False
    return token.startswith(PREFIXES) or ("/" in token and token.endswith(EXTENSIONS))


def clean(token: str) -> str:
    token = token.strip("\"'`()[],;")
    token = token.removeprefix("./")
    token = token.split("::")[0]  # a pytest node id names its file
    token = re.sub(r":\d+(-\d+)?$", "", token)  # file:line
    return token.rstrip(".:")


def exists(path: str) -> bool:
    return any((base / path).exists() for base in BASES)


def code_paths(prose: list[str], code: list[str]) -> list[str]:
    """Path-like tokens in inline code spans and in fenced blocks."""
    chunks = [m.group(2) for line in prose for m in CODE_SPAN.finditer(line)] + code
    return [token for chunk in chunks for token in (clean(t) for t in re.split(r"[\s=]+", chunk)) if looks_like_repo_path(token)]


def check(document: Path) -> list[str]:
    name = document.relative_to(ROOT).as_posix()
    text = document.read_text(encoding="utf-8")
    prose, code = split_fenced(text)
    failures = []
    if "ANCHORS.md" in text:
        failures.append(f"{name}: mentions ANCHORS.md, a file that does not exist")
    for line in prose:
        for match in LINK.finditer(CODE_SPAN.sub("", line)):
            target = match.group(1) or match.group(2)
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto: ...
                continue
            path_part, _, anchor = target.partition("#")
            linked = (document.parent / path_part).resolve() if path_part else document
            if path_part and not linked.exists():
                failures.append(f"{name}: link ({target}): {path_part} does not exist")
                continue
            if anchor and linked.suffix == ".md" and anchor not in anchors(linked):
                failures.append(f"{name}: link ({target}): no heading #{anchor} in {linked.relative_to(ROOT).as_posix()}")
    for path in code_paths(prose, code):
        if not exists(path):
            failures.append(f"{name}: `{path}` does not exist")
    for module in MODULE.findall(text):
        if not (ROOT / (module.replace(".", "/") + ".py")).is_file():
            failures.append(f"{name}: `python -m {module}`: no such module")
    return failures


def test_the_documents_are_all_here():
    missing = [name for name in NAMED if not (ROOT / name).is_file()]
    assert not missing, missing


def test_every_link_anchor_and_path_in_the_documents_exists():
    failures = [failure for document in documents() if document.is_file() for failure in check(document)]
    assert not failures, f"{len(failures)} broken references:\n" + "\n".join(dict.fromkeys(failures))


def test_the_slug_is_githubs():
    assert (
        slug("Tagging speed: Tagger and ONNX Runtime vs `transformers.pipeline` (CPU)")
        == "tagging-speed-tagger-and-onnx-runtime-vs-transformerspipeline-cpu"
    )
    assert slug("Document context (`context_pieces: N`)") == "document-context-context_pieces-n"
    assert slug("Evaluating: `nertune evaluate`, `score`, `compare`") == "evaluating-nertune-evaluate-score-compare"
