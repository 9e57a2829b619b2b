"""`nertune score`, `nertune evaluate`, `nertune compare`: numbers a reviewer can recompute.

All three score with evaluate/scoring.py (conlleval semantics by default,
IOB2 strict with --strict). The report goes to stdout (with --json: the JSON
alone); notices go to stderr.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
import yaml
from rich.table import Table

from nertune.atomic import write_json
from nertune.cli.app import app
from nertune.cli.options import precision_option
from nertune.data.embedded import conll2003_files
from nertune.data.formats import read_data
from nertune.data.jsonl import ReadOptions
from nertune.data.labels import apply_label_map
from nertune.data.schemes import entity_types
from nertune.data.splits import file_md5
from nertune.errors import NertuneError
from nertune.evaluate.conlleval_io import read_predictions, safe_word, write_predictions
from nertune.evaluate.error_analysis import KINDS
from nertune.evaluate.plots import evaluation_plots
from nertune.evaluate.scoring import score as compute
from nertune.model.load import check_precision, model_precision, require_model_dir

SPLITS = ("train", "validation", "test")


def _notice(text: str) -> None:
    from nertune.console import notice  # noqa: PLC0415  (CLI start-up: rich console)

    notice(text)


def _out():
    from rich.console import Console  # noqa: PLC0415  (CLI start-up: rich console)

    return Console(soft_wrap=True, highlight=False)  # stdout: the report is the output


def _mode(strict: bool) -> str:
    return "strict IOB2 (seqeval mode='strict')" if strict else "conlleval (seqeval default)"


def _print_scores(m: dict, title: str) -> None:
    out = _out()
    out.print(
        f"processed {m['words']} words with {m['gold_entities']} entities; found: {m['pred_entities']}; correct: {m['correct_entities']}."
    )
    interval = m.get("f1_interval")
    ci = f" (95% CI {interval['low']:.4f}–{interval['high']:.4f})" if interval else ""
    out.print(f"precision {m['precision']:.4f}  recall {m['recall']:.4f}  F1 {m['f1']:.4f}{ci}  accuracy {m['accuracy']:.4f}")
    table = Table(title=title)
    for column in ("type", "precision", "recall", "F1", "support"):
        table.add_column(column, justify="left" if column == "type" else "right")
    for entity_type, v in m["per_type"].items():
        table.add_row(entity_type, f"{v['precision']:.4f}", f"{v['recall']:.4f}", f"{v['f1']:.4f}", str(v["support"]))
    out.print(table)


def _print_errors(errors: dict) -> None:
    table = Table(title="Entity errors (gold type; spurious: predicted type)")
    table.add_column("type")
    for header in ("wrong type", "boundary", "type+boundary", "missed", "spurious"):
        table.add_column(header, justify="right")
    for entity_type, row in errors["per_type"].items():
        table.add_row(entity_type, *(str(row[k]) for k in KINDS))
    table.add_row("all", *(str(errors[k]) for k in KINDS), style="bold")
    _out().print(table)


# ---- score -------------------------------------------------------------------


# The same option on score, evaluate and compare: written once.
RAGGED_COLUMNS = typer.Option(
    False,
    "--ragged-columns",
    help=(
        "Lines may have different numbers of columns: the tag is the last one whatever the count (default: refused, as conlleval.pl does)."
    ),
)


@app.command()
def score(
    file: str = typer.Argument(..., help="conlleval-format file: 'WORD ... GOLD PRED' per line, blank lines between sentences."),
    strict: bool = typer.Option(False, "--strict", help="IOB2 strict: only B-X I-X… entities count (seqeval mode='strict')."),
    scheme: str = typer.Option("iob2", help="iob2: tags as written (default). iob1: convert both columns from IOB1 first."),
    json_out: bool = typer.Option(False, "--json", help="Print only {precision, recall, f1, accuracy, per_type} as JSON."),
    ragged_columns: bool = RAGGED_COLUMNS,
):
    """Score a predictions file the way conlleval does (or IOB2 strict with --strict)."""
    predictions = read_predictions(file, scheme, ragged_columns)
    if scheme == "iob2" and predictions.gold_looks_like == "iob1":
        _notice(
            f"{file}: the gold tags look like IOB1 (entities start with I-); they are read as written — "
            "pass --scheme iob1 to convert (conlleval entity scores are the same either way)"
        )
    metrics = compute(predictions.gold, predictions.pred, strict=strict)
    if json_out:
        keys = ("precision", "recall", "f1", "accuracy", "per_type")
        sys.stdout.write(json.dumps({k: metrics[k] for k in keys}, indent=2) + "\n")
        return
    from nertune.evaluate.bootstrap import f1_interval, sentence_totals  # noqa: PLC0415  (CLI start-up: no numpy)

    metrics["f1_interval"] = f1_interval(sentence_totals(predictions.gold, predictions.pred, strict))
    _print_scores(metrics, f"{file} — {_mode(strict)}, tags read as {scheme.upper()}")


# ---- evaluate ------------------------------------------------------------------


def _run_record(model_dir: str) -> dict | None:
    """The data fields of the run's recipe.yaml and the md5 of its files (metrics.json); None: not a nertune run."""
    recipe = Path(model_dir) / "recipe.yaml"
    if not recipe.is_file():
        return None
    try:
        fields = yaml.safe_load(recipe.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, UnicodeDecodeError, ValueError, RecursionError):
        fields = None
    if not isinstance(fields, dict):
        raise NertuneError(
            "the run's recipe.yaml is unreadable, so its data is unknown",
            path=str(recipe),
            fix="name the data: --file FILE or --data conll2003",
        )
    try:
        md5 = json.loads((Path(model_dir) / "metrics.json").read_text(encoding="utf-8")).get("data_md5") or {}
    except (OSError, ValueError, AttributeError):
        md5 = {}
    return {"recipe": str(recipe), "fields": fields, "md5": md5 if isinstance(md5, dict) else {}}


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise NertuneError(f"unknown split {split!r}", fix="use --split validation or --split test (or train)")
    return split


def _run_data(model_dir: str, split: Optional[str]) -> tuple[str, str, str, str | None]:
    """What a run was tested on: (path, split, what to say, md5 at training time or None).

    Its test file, else its validation file (--split picks another), else the embedded split of the data
    set it named. A model folder without recipe.yaml (not a nertune run) gets the embedded CoNLL-2003.
    """
    record = _run_record(model_dir)
    if record is None:
        split = _check_split(split or "test")
        return (
            str(conll2003_files()[split]),
            split,
            f"no --data or --file, and {model_dir} has no recipe.yaml (not a nertune run): "
            f"evaluating on the embedded conll2003 {split} split",
            None,
        )
    fields, where = record["fields"], record["recipe"]
    files = {name: fields.get(name) for name in SPLITS if isinstance(fields.get(name), str) and fields.get(name)}
    if split is not None:
        _check_split(split)
        chosen = [split] if split in files or not files else []  # files recorded: only theirs
    else:
        chosen = [name for name in ("test", "validation") if name in files] if files else ["test"]
    if chosen:
        split = chosen[0]
        if split in files:
            path = files[split]
            if not Path(path).is_file():
                relative = "" if Path(path).is_absolute() else " (a relative path: from the folder the run was trained in)"
                raise NertuneError(
                    f"the run's {split} file (recorded in {where}) is not found{relative}",
                    path=path,
                    fix="pass the data to evaluate on with --file FILE",
                )
            return (
                path,
                split,
                f"no --data or --file: evaluating on the run's {split} file {path} (recorded in {where})",
                record["md5"].get(split),
            )
        data = fields.get("data") or "conll2003"
        if data != "conll2003":
            raise NertuneError(
                f"the run's data set {data!r} (recorded in {where}) is not one nertune embeds",
                fix="pass the data to evaluate on with --file FILE",
            )
        return (
            str(conll2003_files()[split]),
            split,
            f"no --data or --file: evaluating on the embedded conll2003 {split} split, the run's data (recorded in {where})",
            None,
        )
    named = ", ".join(f"{name} {path}" for name, path in files.items())
    wanted = f"{split} file" if split else "test or validation file"
    raise NertuneError(
        f"the run recorded no {wanted} ({where} names {named})",
        path=str(model_dir),
        fix="pass the data to evaluate on with --file FILE (or --data conll2003)",
    )


def _gold_source(data: Optional[str], split: Optional[str], file: Optional[str], model_dir: Optional[str]):
    """Where the labelled sentences come from: (path, split or None, notice or None, training-time md5 or None).

    --file FILE, or --data conll2003 (--split, default test); with neither, the data the run in
    `model_dir` was tested on (_run_data), said on stderr.
    """
    if file and data:
        raise NertuneError("give --data or --file, not both", fix="drop one of them")
    if file:
        return file, None, None, None
    if data:
        if data != "conll2003":
            raise NertuneError(f"unknown data set {data!r}", fix="use --data conll2003 --split validation|test, or --file FILE")
        split = _check_split(split or "test")
        return str(conll2003_files()[split]), split, None, None
    if model_dir is not None:
        return _run_data(model_dir, split)
    raise NertuneError("no data to evaluate on", fix="pass --file FILE or --data conll2003")


def _read_gold(source: tuple, max_sentences: Optional[int], ragged: bool = False, model_dir: Optional[str] = None):
    """The labelled sentences of a _gold_source (any format training reads), with the label map the run in
    `model_dir` was trained with; its notice (and any the file raises) go to stderr."""
    path, _, said, md5 = source
    if max_sentences is not None and max_sentences < 1:
        raise NertuneError("--max-sentences must be at least 1")
    if said:
        _notice(said)
    if md5 and Path(path).is_file() and file_md5(path) != md5:
        _notice(f"{path} has changed since the run was trained (its md5 differs from the one in metrics.json)")
    gold = read_data(path, ReadOptions(ragged=ragged))
    for notice in gold.notices:
        _notice(notice)
    label_map = _run_label_map(model_dir)
    dropped = apply_label_map(gold, label_map)
    if label_map:
        _notice(
            f"the run's label map applied: {json.dumps(label_map)}" + (f"; dropped {sum(dropped.values()):,} entities" if dropped else "")
        )
    if max_sentences is not None:
        gold.sentences = gold.sentences[:max_sentences]
    return gold


def _run_label_map(model_dir: Optional[str]) -> dict | None:
    """The --label-map a run was trained with (metrics.json), so it is scored on the labels it learned."""
    if not model_dir:
        return None
    try:
        return json.loads((Path(model_dir) / "metrics.json").read_text(encoding="utf-8")).get("label_map")
    except (OSError, ValueError, AttributeError):
        return None


def _model_types(label2id) -> set[str]:
    return set(entity_types(label2id))


def _check_label_sets(model_types: set[str], gold, model_dir: str) -> None:
    """Data with an entity type the model has no label for cannot be scored fairly: one line naming both sets."""
    missing = sorted(gold.entity_types - model_types)
    if missing:

        def braces(types) -> str:
            return "{" + ", ".join(sorted(types)) + "}"

        raise NertuneError(
            f"model labels {braces(model_types)} vs data labels {braces(gold.entity_types)}: "
            f"the model in {model_dir} has no label for {', '.join(missing)}",
            path=gold.path,
            fix="evaluate on data labelled with the model's entity types (--file FILE), or train a model on this data",
        )


def _check_labels_early(model_dir: str, gold) -> None:
    """The label check from config.json, before torch loads; _run_model checks the loaded model's labels again."""
    try:
        label2id = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))["label2id"]
    except (OSError, ValueError, KeyError, TypeError):
        return  # loading the model will say what is wrong
    if isinstance(label2id, dict):
        _check_label_sets(_model_types(label2id), gold, model_dir)


def _run_model(model_dir: str, gold, device: Optional[str], strict: bool, constrain: bool, details: bool, precision: str = "auto") -> dict:
    from nertune.evaluate.model_scores import evaluate_sentences  # noqa: PLC0415  (CLI start-up: no torch)
    from nertune.model.inference import load_for_tagging  # noqa: PLC0415  (CLI start-up: no torch)

    _check_labels_early(model_dir, gold)
    model, tokenizer, device = load_for_tagging(model_dir, device, precision)
    _check_label_sets(_model_types(model.config.label2id), gold, model_dir)
    result = evaluate_sentences(model, tokenizer, gold.sentences, device, strict=strict, constrain=constrain, details=details)
    return result | {"weights": model_precision(model)}


@app.command()
def evaluate(
    model_dir: str = typer.Argument(..., help="A model directory (the --output-dir of `nertune train`) or an `nertune export` folder."),
    data: Optional[str] = typer.Option(
        None,
        help=(
            "'conll2003' (embedded). Default, with no --file either: the data the run was tested on "
            "(recipe.yaml: its test file, else validation file, else its embedded split)."
        ),
    ),
    split: Optional[str] = typer.Option(
        None,
        help=(
            "Split of --data, or of the run's own files: validation or test (or train). "
            "Default: test (a run without a test file: validation)."
        ),
    ),
    file: Optional[str] = typer.Option(None, help="A labelled CoNLL file instead of --data (IOB1/BIOES are detected and converted)."),
    json_out: bool = typer.Option(False, "--json", help="Print the report as JSON to stdout."),
    predictions: Optional[str] = typer.Option(None, help="Write 'WORD GOLD PRED' lines here (for `nertune score` or conlleval.pl)."),
    strict: bool = typer.Option(False, "--strict", help="IOB2 strict entity scores instead of conlleval's."),
    constrain: bool = typer.Option(
        False, "--constrain/--no-constrain", help="Viterbi-decode valid IOB2 only; default: per-word argmax, as training reports."
    ),
    report_dir: Optional[str] = typer.Option(None, help="Write evaluation.json and the plots (per-type F1, type confusion) here."),
    max_sentences: Optional[int] = typer.Option(None, help="Evaluate the first N sentences only."),
    device: Optional[str] = typer.Option(None, help="cpu, cuda, cuda:1 … (default: cuda when available)."),
    precision: str = precision_option(),
    ragged_columns: bool = RAGGED_COLUMNS,
):
    """Evaluate a trained model on every word of every sentence: loss, P/R/F1, accuracy, errors."""
    check_precision(precision)
    require_model_dir(model_dir)
    source = _gold_source(data, split, file, model_dir)
    gold = _read_gold(source, max_sentences, ragged_columns, model_dir)
    result = _run_model(model_dir, gold, device, strict, constrain, details=True, precision=precision)
    metrics = result["metrics"]
    report = {
        "model": str(model_dir),
        "data": gold.path,
        "split": source[1],
        "scheme": gold.scheme,
        "decoding": "constrained" if constrain else "argmax",
        "mode": "strict" if strict else "conlleval",
        "weights": result["weights"],  # fp32, bf16 (--precision) or int8 (an export)
        **metrics,
    }
    if predictions:
        write_predictions(predictions, [s.words for s in gold.sentences], [s.tags for s in gold.sentences], result["predictions"])
        _notice(f"predictions written to {predictions} (score them with `nertune score {predictions}`)")
    if report_dir:
        write_json(Path(report_dir) / "evaluation.json", report)
        plots = evaluation_plots(Path(report_dir), metrics, Path(gold.path).name)
        _notice(f"report written to {report_dir}: evaluation.json{''.join(', ' + p for p in plots)}")
    if json_out:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
        return
    out = _out()
    out.print(f"model {model_dir} ({report['weights']} weights) on {gold.path} ({metrics['sentences']} sentences)")
    out.print(
        f"gold tags: {gold.scheme.upper()}{' (converted to IOB2)' if gold.scheme != 'iob2' else ''}; "
        f"decoding: {report['decoding']}; entity scores: {_mode(strict)}; "
        f"{metrics['long_sentences']} sentence(s) longer than one window, covered by overlapping windows"
    )
    out.print(f"loss {metrics['loss']:.4f}")
    _print_scores(metrics, "Per type")
    _print_errors(metrics["errors"])


# ---- compare -------------------------------------------------------------------


def _system(
    source: str, gold_loader, device, strict: bool, constrain: bool, scheme: str, ragged: bool = False, precision: str = "auto"
) -> dict:
    """words / gold / predicted tags of one side: a prediction file, or a model directory run on the data."""
    if Path(source).is_dir():
        gold = gold_loader(source)
        result = _run_model(source, gold, device, strict, constrain, details=False, precision=precision)
        return {
            "source": source,
            "words": [s.words for s in gold.sentences],
            "gold": [s.tags for s in gold.sentences],
            "pred": result["predictions"],
            "lines": [s.line for s in gold.sentences],
            "path": gold.path,
        }
    file = read_predictions(source, scheme, ragged)
    return {"source": source, "words": file.words, "gold": file.gold, "pred": file.pred, "lines": file.lines, "path": source}


def _check_same_data(a: dict, b: dict) -> None:
    if len(a["gold"]) != len(b["gold"]):
        raise NertuneError(
            f"A has {len(a['gold'])} sentences, B has {len(b['gold'])}: not the same data",
            path=b["path"],
            fix="compare predictions made on the same file",
        )
    for index, (words_a, gold_a, words_b, gold_b) in enumerate(zip(a["words"], a["gold"], b["words"], b["gold"])):
        if [safe_word(w) for w in words_a] != [safe_word(w) for w in words_b] or gold_a != gold_b:
            raise NertuneError(
                f"sentence {index + 1} differs between A and B (words or gold tags)",
                path=b["path"],
                line=b["lines"][index],
                fix="compare predictions made on the same file",
            )


@app.command()
def compare(
    a: str = typer.Argument(..., help="System A: a predictions file ('WORD GOLD PRED') or a model directory."),
    b: str = typer.Argument(..., help="System B: the same, on the same data."),
    data: Optional[str] = typer.Option(
        None,
        help="For model directories: 'conll2003'. Default, with no --file either: the data the run(s) were tested on, as `evaluate` does.",
    ),
    split: Optional[str] = typer.Option(None, help="For model directories: the split of --data or of the runs' own files (default: test)."),
    file: Optional[str] = typer.Option(None, help="For model directories: a labelled CoNLL file."),
    strict: bool = typer.Option(False, "--strict", help="IOB2 strict entity scores instead of conlleval's."),
    scheme: str = typer.Option("iob2", help="How to read prediction files: iob2 (as written) or iob1."),
    constrain: bool = typer.Option(False, "--constrain/--no-constrain", help="For model directories: Viterbi-decode valid IOB2."),
    resamples: int = typer.Option(1000, help="Bootstrap resamples (of sentences)."),
    seed: int = typer.Option(0, help="Seed of the resampling."),
    max_sentences: Optional[int] = typer.Option(None, help="For model directories: the first N sentences only."),
    device: Optional[str] = typer.Option(None, help="cpu, cuda … (default: cuda when available)."),
    precision: str = precision_option(),
    json_out: bool = typer.Option(False, "--json", help="Print the comparison as JSON to stdout."),
    ragged_columns: bool = RAGGED_COLUMNS,
):
    """Is B better than A? F1 of each and the paired-bootstrap 95% interval of the difference."""
    check_precision(precision)
    from nertune.evaluate.bootstrap import paired_bootstrap, sentence_totals, verdict  # noqa: PLC0415  (CLI start-up: no numpy)

    if resamples < 100:
        raise NertuneError("--resamples must be at least 100", fix="use the default 1000 or more")
    loaded = {}
    if not (data or file):  # each run's own data: both runs must name the same
        sources = {side: _gold_source(data, split, file, side) for side in (a, b) if Path(side).is_dir()}
        paths = {side: str(Path(source[0]).resolve()) for side, source in sources.items()}
        if len(set(paths.values())) > 1:
            raise NertuneError(
                f"A was tested on {sources[a][0]}, B on {sources[b][0]}: not the same data",
                fix="compare them on one file: --file FILE (or --data conll2003)",
            )
        if sources:
            loaded["source"] = next(iter(sources.values()))

    def gold_loader(model_dir: str):
        if "gold" not in loaded:
            loaded["gold"] = _read_gold(
                loaded.get("source") or _gold_source(data, split, file, model_dir), max_sentences, ragged_columns, model_dir
            )
        return loaded["gold"]

    side_a = _system(a, gold_loader, device, strict, constrain, scheme, ragged_columns, precision)
    side_b = _system(b, gold_loader, device, strict, constrain, scheme, ragged_columns, precision)
    _check_same_data(side_a, side_b)
    result = paired_bootstrap(
        sentence_totals(side_a["gold"], side_a["pred"], strict),
        sentence_totals(side_b["gold"], side_b["pred"], strict),
        resamples,
        seed=seed,
    )
    scores = {name: compute(side["gold"], side["pred"], strict) for name, side in (("a", side_a), ("b", side_b))}
    report = {
        **{
            name: {"source": side["source"], **{k: scores[name][k] for k in ("precision", "recall", "f1", "accuracy")}}
            for name, side in (("a", side_a), ("b", side_b))
        },
        "sentences": len(side_a["gold"]),
        "mode": "strict" if strict else "conlleval",
        **{k: result[k] for k in ("difference", "low", "high", "level", "resamples", "b_better_share")},
        "verdict": verdict(result),
    }
    if json_out:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
        return
    out = _out()
    for name in ("a", "b"):
        s = report[name]
        out.print(
            f"{name.upper()}: {s['source']}  F1 {s['f1']:.4f}  "
            f"(precision {s['precision']:.4f}, recall {s['recall']:.4f}, accuracy {s['accuracy']:.4f})"
        )
    out.print(
        f"F1(B) - F1(A) = {report['difference']:+.4f}, {round(100 * report['level'])}% interval "
        f"[{report['low']:+.4f}, {report['high']:+.4f}] (paired bootstrap, {resamples} resamples of "
        f"{report['sentences']} sentences, {_mode(strict)}); B better in {100 * report['b_better_share']:.1f}% of resamples"
    )
    out.print(report["verdict"])
