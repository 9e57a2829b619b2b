"""`nertune predict MODEL_DIR (--text "…" | FILE | -)`: tag raw text from the command line.

A file (or stdin) is one text per line, read and tagged a chunk of lines at a
time and written as it goes, so a file of any size streams through in constant
memory. A line longer than --max-line-chars is read and tagged in pieces cut
between sentences (or at whitespace), one record each, so even a file with no
line breaks never sits in memory whole. Data alone goes to stdout; notices and
the progress bar (files only) to stderr.

    jsonl  one {"text", "entities"} object per input line (blank lines included)
    json   the same objects as one JSON array, written as they come
    conll  "word TAG" per word, a blank line after each sentence
"""

from __future__ import annotations

import codecs
import json
import os
import sys
from pathlib import Path
from typing import IO, Iterator, Optional

import typer

from nertune.cli.app import app
from nertune.cli.options import precision_option
from nertune.data.words import split_sentences
from nertune.errors import NertuneError
from nertune.model.load import check_precision, require_model_dir

FORMATS = ("jsonl", "json", "conll")


def read_lines(handle: IO[bytes], name: str, max_chars: int = 100_000, notice=None) -> Iterator[str]:
    """UTF-8 lines without their line ends; a bad byte is an error naming its line.

    A line longer than `max_chars` comes in pieces of at most that many characters (`cut`):
    never more than about twice that is held, and joined the pieces are the line."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    number, pending, pieces, start = 1, "", 0, True
    while raw := handle.readline(max_chars):  # at most max_chars bytes, so at most max_chars characters
        ended = raw.endswith(b"\n")
        try:
            pending += decoder.decode(raw, final=ended)
        except UnicodeDecodeError as error:
            raise NertuneError(
                f"byte 0x{error.object[error.start]:02x} is not UTF-8",
                path=name,
                line=number,
                fix="re-save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)",
            ) from None
        if start:
            pending, start = pending.removeprefix("\ufeff"), False
        if ended:
            pending = pending.rstrip("\n").removesuffix("\r")
        while len(pending) > max_chars:
            if pieces == 0 and notice:
                notice(
                    f"{name}:{number} is longer than {max_chars:,} characters (--max-line-chars): tagged in pieces cut between "
                    "sentences, one record each; joined, their texts are the line"
                )
            end = cut(pending, max_chars)
            yield pending[:end]
            pending, pieces = pending[end:], pieces + 1
        if ended:
            yield pending
            number, pending, pieces = number + 1, "", 0
    try:
        pending += decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise NertuneError(
            "the file ends inside a UTF-8 character",
            path=name,
            line=number,
            fix="re-save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)",
        ) from None
    if pending:  # a last line with no line end
        yield pending.removesuffix("\r")


def cut(text: str, limit: int) -> int:
    """Where to end a piece of at most `limit` characters: before its last sentence, else after its last
    whitespace, else at the limit (an entity is only split in the last case)."""
    window = text[:limit]
    sentences = split_sentences(window)
    if len(sentences) > 1:  # the last one may go on past the window: it starts the next piece
        return sentences[-1][0]
    space = max(window.rfind(" "), window.rfind("\t"))
    return space + 1 if space > 0 else limit


def chunks(lines: Iterator[str], size: int, max_chars: int) -> Iterator[list[str]]:
    """Up to `size` lines at a time, fewer once they reach `max_chars` characters (pieces of one long line)."""
    chunk: list[str] = []
    chars = 0
    for line in lines:
        chunk.append(line)
        chars += len(line)
        if len(chunk) >= size or chars >= max_chars:
            yield chunk
            chunk, chars = [], 0
    if chunk:
        yield chunk


class Writer:
    """Formats results on stdout; `json` opens the array on the first result and closes it at the end."""

    def __init__(self, out: IO[str], format: str):
        self.out, self.format, self.count = out, format, 0

    def write(self, tagger, texts: list[str], constrain: bool) -> None:
        parts: list[str] = []
        if self.format == "conll":
            for sentences in tagger.tag_sentences(texts, constrain):
                for sentence in sentences:
                    parts.extend(f"{w.text} {w.tag}\n" for w in sentence)
                    parts.append("\n")
        else:
            from nertune.tag.tagger import entities  # noqa: PLC0415  (CLI start-up: no torch)

            for text, sentences in zip(texts, tagger.tag_sentences(texts, constrain)):
                found = [e for sentence in sentences for e in entities(text, sentence)]
                line = json.dumps({"text": text, "entities": found}, ensure_ascii=False)
                if self.format == "json":
                    line = ("[\n" if self.count == 0 else ",\n") + line
                else:
                    line += "\n"
                parts.append(line)
                self.count += 1
        self.out.write("".join(parts))
        self.out.flush()

    def close(self) -> None:
        if self.format == "json":
            self.out.write("[]\n" if self.count == 0 else "\n]\n")
        self.out.flush()


@app.command()
def predict(
    model_dir: str = typer.Argument(..., help="A model directory (the --output-dir of `nertune train`)."),
    file: Optional[str] = typer.Argument(None, help="Text file, one text per line; '-' reads stdin."),
    text: Optional[str] = typer.Option(None, "--text", help="Tag this text instead of a file."),
    format: str = typer.Option("jsonl", "--format", help="jsonl | json | conll."),
    constrain: bool = typer.Option(
        True, "--constrain/--no-constrain", help="Decode valid IOB2 only (Viterbi; default), or show the raw per-word argmax."
    ),
    device: Optional[str] = typer.Option(None, help="cpu, cuda, cuda:1 … (default: cuda when available)."),
    precision: str = precision_option(),
    batch_lines: int = typer.Option(256, help="Lines read and tagged together."),
    max_line_chars: int = typer.Option(100_000, help="Longer lines are tagged in pieces of at most this many characters, one record each."),
    progress: bool = typer.Option(True, help="Progress bar on stderr when reading a file."),
):
    """Tag raw text: entities with character offsets (json, jsonl) or one tag per word (conll)."""
    if format not in FORMATS:
        raise NertuneError(f"unknown format {format!r}", fix="use --format jsonl, json or conll")
    if (text is None) == (file is None):
        raise NertuneError(
            "give either --text TEXT or a FILE ('-' for stdin)" if text is None else "give --text or FILE, not both",
            fix='nertune predict MODEL_DIR --text "…"  or  nertune predict MODEL_DIR input.txt',
        )
    if batch_lines < 1:
        raise NertuneError("--batch-lines must be at least 1")
    if max_line_chars < 1_000:
        raise NertuneError("--max-line-chars must be at least 1,000", fix="a piece should hold whole sentences")
    check_precision(precision)
    require_model_dir(model_dir)
    handle = None
    if file not in (None, "-"):
        path = Path(file)
        if not path.is_file():
            raise NertuneError(
                "is a directory, expected a text file" if path.is_dir() else "file not found", path=file, fix="check the path"
            )
        handle = open(path, "rb")

    from nertune.tag.tagger import Tagger  # noqa: PLC0415  (CLI start-up: no torch)

    tagger = Tagger.load(model_dir, device=device, precision=precision)
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(encoding="utf-8")  # entity text is Unicode whatever the locale
    writer = Writer(sys.stdout, format)
    try:
        if text is not None:
            writer.write(tagger, [text], constrain)
        elif handle is None:
            for chunk in chunks(read_lines(sys.stdin.buffer, "<stdin>", max_line_chars, _notice), batch_lines, max_line_chars):
                writer.write(tagger, chunk, constrain)
        else:
            with handle, _progress(file, progress) as advance:
                for chunk in chunks(read_lines(handle, file, max_line_chars, _notice), batch_lines, max_line_chars):
                    writer.write(tagger, chunk, constrain)
                    advance(handle.tell(), len(chunk))
        writer.close()
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, as Python's docs recommend.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)


def _notice(message: str) -> None:
    from nertune.console import notice  # noqa: PLC0415  (CLI start-up: rich console; stderr)

    notice(message)


class _progress:
    """A rich progress bar over the file's bytes, on stderr; a no-op when disabled."""

    def __init__(self, file: str, enabled: bool):
        self.enabled, self.total, self.lines = enabled, os.path.getsize(file), 0

    def __enter__(self):
        if not self.enabled:
            return lambda position, lines: None
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn  # noqa: PLC0415  (CLI start-up: rich console)

        from nertune.console import console  # noqa: PLC0415  (CLI start-up: rich console)

        self.bar = Progress(
            TextColumn("[bold]tagging"),
            BarColumn(),
            DownloadColumn(),
            TextColumn("{task.fields[lines]} lines"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
        )
        self.task = self.bar.add_task("tagging", total=self.total, lines=0)
        self.bar.start()
        return self.advance

    def advance(self, position: int, lines: int) -> None:
        self.lines += lines
        self.bar.update(self.task, completed=position, lines=self.lines)

    def __exit__(self, *exc) -> None:
        if self.enabled:
            self.bar.stop()
