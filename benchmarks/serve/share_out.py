"""An int8 export's Tagger on served micro-batches, its passes shared out to the two sessions as shipped or dealt in turn.

    python -m benchmarks.serve.share_out EXPORT_DIR [--rounds 4] [--name NAME]
        -> benchmarks/serve/results/share_out-NAME-<cpu kind>cpu.txt

One process. The CoNLL-2003 test sentences with more than two words (as the load test sends them) go through
`Tagger.tag_batch` in batches of 8 and of 16 (served micro-batches: one or two passes under the token budget),
and of 432 (an eighth of the test set), alternately with model/word_scores.py `share_out` as shipped (the pass
that ends last cut, short rows from long, while that makes every pass end sooner) and as it was before (a batch
of one pass split in two, its rows dealt in turn, so both halves as wide as the whole). Also counted: the padded
tokens of the session that ends last, each pass queued on the first free session, summed over the batches. Each
cell is the median over --rounds of the time per batch; the order alternates each round. Time it on a quiet machine.
"""

from __future__ import annotations

import contextlib

import nertune.model.word_scores as word_scores
from benchmarks.common import cpu_line, git_sha, write_report
from benchmarks.serve.alternated import alternated, arguments, patched, summary
from benchmarks.serve.load_test import sentences
from nertune.tag.tagger import Tagger


def dealt(batches: list[list], sessions: int, width) -> list[list]:
    """`share_out` before: the rows of the widest pass dealt in turn until each session has one."""
    batches = list(batches)
    while len(batches) < sessions:
        widest = max(range(len(batches)), key=lambda i: len(batches[i]), default=None)
        if widest is None or len(batches[widest]) < 2:
            break
        rows = batches.pop(widest)
        batches += [rows[0::2], rows[1::2]]
    return batches


WAYS = {"shipped": word_scores.share_out, "dealt in turn": dealt}


def last_session_tokens(tagger: Tagger, batches: list[list[str]], way: str) -> int:
    """Padded tokens of the session that ends last in each batch, each pass in order on the first free session."""
    seen: list[int] = []
    share_out = WAYS[way]

    def noting(passes, sessions, width):
        shared = share_out(passes, sessions, width)
        seen.append(word_scores._schedule(shared, sessions, lambda rows: len(rows) * max(map(width, rows)))[0])
        return shared

    with patched(word_scores, "share_out", noting):
        for batch in batches:
            tagger.tag_batch(batch)
    return sum(seen)


def main() -> None:
    args = arguments(__doc__)
    tagger = Tagger.load(args.export_dir)
    texts = sentences()
    sizes = {size: [texts[i : i + size] for i in range(0, size * (2400 // size), size)] for size in (8, 16)}
    sizes[432] = [texts[i : i + 432] for i in range(0, 432 * (len(texts) // 432), 432)]
    ways = {"shipped": contextlib.nullcontext, "dealt in turn": lambda: patched(word_scores, "share_out", dealt)}
    seconds = alternated(tagger, sizes, ways, args.rounds)
    lines = [
        cpu_line(),
        f"export {args.export_dir} ({tagger.backend}, {tagger.model.concurrent_passes} sessions); git {git_sha()}; "
        f"{args.rounds} rounds, alternated",
    ]
    for size, batches in sizes.items():
        tokens = {way: last_session_tokens(tagger, batches, way) for way in ways}
        extra = f"; the last session's {tokens['shipped']:,} against {tokens['dealt in turn']:,} padded tokens"
        lines.append(summary(size, batches, seconds, "shipped", "dealt in turn", extra))
    write_report(__file__, f"share_out-{args.name}", lines)


if __name__ == "__main__":
    main()
