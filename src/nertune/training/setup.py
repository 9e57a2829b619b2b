"""Everything a run needs before its first step, built in one place and in one order: `setup(recipe) -> Run`.

    data (a bad file fails before anything heavy loads) -> precision and Accelerate -> seed -> model and
    its windows (with a teacher's probabilities, training/distill.py) -> AdamW and the schedule -> the step
    runner -> where the run is (fresh, or a checkpoint)

The order is part of the contract: the seed is set before the model's head is drawn and the data order
is drawn after, so a run and its resume see the same numbers.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Callable, Sequence

import torch
from accelerate import Accelerator
from accelerate.utils import AutocastKwargs, set_seed

from nertune.console import console, notice
from nertune.data.features import Window, shared_steps_per_epoch
from nertune.data.jsonl import ReadOptions
from nertune.data.labels import parse_label_map
from nertune.data.schemes import entity_types
from nertune.data.splits import Splits, load_splits
from nertune.errors import NertuneError
from nertune.model.load import load_for_training, load_tokenizer, remove_stale_saves
from nertune.model.positions import max_pieces_for, packing_offset
from nertune.model.word_scores import build_windows
from nertune.training import diagnostics, tracking
from nertune.training.checkpoint import (
    Checkpoints,
    RunState,
    check_output_dir,
    clear_output_dir,
    find_checkpoint,
    new_run_dir,
    rng_from_json,
    trim_log,
)
from nertune.training.distill import HOLD_OUT, HOLD_OUT_MD5, attach_teacher
from nertune.training.precision import choose_precision
from nertune.training.recipe import Recipe, labels_for
from nertune.training.run_files import RunLog, git_sha
from nertune.training.runner import StepRunner, step_runner
from nertune.training.speed.dropout import use_cheap_dropout
from nertune.training.speed.embedding_rows import train_used_rows_only
from nertune.training.tracking import tracker_settings

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class Run:
    """A run in progress: what `setup` built and what the loop moves forward (`state`)."""

    recipe: Recipe
    splits: Splits
    labels: list[str]
    output_dir: Path
    resume_from: tuple | None
    accelerator: object
    precision: str
    precision_why: str
    code_version: str | None
    tokenizer: object
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: object
    windows: list[Window]
    windows_of: list[list[int]]  # each training sentence's windows (indices into `windows`)
    words_in_sentence: list[int]
    piece_lengths: list[int]  # each sentence's wordpieces, context included: what length-grouping sorts by (unused with groups)
    group_by_length: bool
    groups: list[list[int]] | None  # sentences sharing one input (shared_window_pieces), never split across steps; None: off
    steps: StepRunner
    checkpoints: Checkpoints
    state: RunState
    log: RunLog
    order: random.Random  # the data order: each epoch's steps are drawn from it in turn
    divergence: diagnostics.DivergenceWatch
    loss_watch: diagnostics.LossWatch
    progress: bool = True
    say: Callable[[str], None] = field(default=print)

    @property
    def main(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def world(self) -> int:
        return self.accelerator.num_processes

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    @property
    def sentences_per_step(self) -> int:
        return self.recipe.sentences_per_step

    @cached_property
    def group_of(self) -> list[int]:
        """Each sentence's group (an index into `groups`)."""
        of = [0] * len(self.words_in_sentence)
        for index, group in enumerate(self.groups or []):
            for sentence in group:
                of[sentence] = index
        return of

    @property
    def steps_per_epoch(self) -> int:
        return steps_per_epoch(len(self.splits.train.sentences), self.sentences_per_step, self.groups)

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.recipe.epochs

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return AUTOCAST_DTYPES.get(self.precision)

    def notice(self, text: str, label: str = "notice") -> None:
        if self.main:
            notice(text, label)

    def diagnose(self, message: str | None) -> None:
        if message:
            self.notice(message, "diagnosis")


def setup(recipe: Recipe, resume: bool = False, overwrite: bool = False, progress: bool = True) -> Run:
    """Build a run from its recipe; `resume` picks up the latest checkpoint in recipe.output_dir, `overwrite`
    replaces a finished run there (its files are removed only once the model has loaded)."""
    splits = load_splits(
        recipe.data,
        recipe.train,
        recipe.validation,
        recipe.test,
        recipe.max_train_sentences,
        recipe.max_eval_sentences,
        options=read_options(recipe),
        label_map=parse_label_map(recipe.label_map),
        train_on_validation=recipe.train_on_validation,
        held_out=recipe.held_out,
    )
    if splits.train is None:
        raise NertuneError("no training data", fix="use --data conll2003 or --train FILE")
    labels = labels_for(recipe.model, splits.labels)
    output_dir = Path(recipe.output_dir or new_run_dir(f"runs/{datetime.now().strftime('%Y%m%d-%H%M%S')}"))
    # Also before the model loads: a resume that cannot work says so at once.
    resume_from = find_checkpoint(recipe.output_dir, recipe.model_dump(), splits.md5) if resume else None
    if not resume:
        check_output_dir(output_dir, overwrite)

    on_gpu = torch.cuda.is_available()
    precision, precision_notice, precision_why = choose_precision(recipe.mixed_precision, on_gpu)
    # Under torchrun on a CPU machine Accelerate only distributes when told to use the CPU. Autocast's
    # weight-cast cache is off on a GPU: CUDA graph capture requires it, and a forward casts each weight once anyway.
    accelerator = Accelerator(
        mixed_precision=precision,
        cpu=not on_gpu,
        kwargs_handlers=[AutocastKwargs(cache_enabled=False)] if on_gpu else None,
        **tracker_settings(recipe.report_to, output_dir),
    )
    say = console.print if accelerator.is_main_process else (lambda *a, **k: None)
    if accelerator.is_main_process:
        for text in ([precision_notice] if precision_notice else []) + list(splits.notices()):
            notice(text)
        types = entity_types(labels)
        console.print(f"entity types: {', '.join(types)} ({len(labels)} labels, IOB2)", markup=False, highlight=False)
    set_seed(recipe.seed)
    code_version = git_sha()  # the code that trains: taken now, edits during a long run do not change it

    tokenizer = load_tokenizer(recipe.model)
    model = load_for_training(recipe.model, labels, recipe.dropout, recipe.casing, recipe.context_pieces, recipe.crf)
    # In the saved config.json: a teacher teaches only the fold it never saw (training/distill.py). A run continued
    # from a held-out one on every document has seen that fold: the claim goes.
    for key in (HOLD_OUT, HOLD_OUT_MD5):
        model.config.__dict__.pop(key, None)
    if recipe.hold_out:
        model.config.update({HOLD_OUT: recipe.hold_out, HOLD_OUT_MD5: splits.md5.get("train")})
    if not on_gpu and recipe.cheap_dropout:  # the same dropout, its CPU mask drawn from fewer random bits
        use_cheap_dropout(model)
    windows, windows_of, position_offset, group_by_length = _training_windows(recipe, splits, labels, tokenizer, model, accelerator)
    groups = shared_groups(windows) if recipe.shared_window_pieces else None
    sentences = splits.train.sentences
    attach_teacher(windows, recipe, sentences, labels, accelerator.device, AUTOCAST_DTYPES.get(precision), say, splits.md5.get("train"))
    # Rows of the word embedding no training window uses would never move: leave them out (same updates).
    if recipe.used_rows_only:
        train_used_rows_only(model, {i for w in windows for i in w.input_ids}, recipe.weight_decay)
    optimizer = _optimizer(model, recipe)
    total_steps = steps_per_epoch(len(sentences), recipe.sentences_per_step, groups) * recipe.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_schedule(recipe, total_steps))
    model, optimizer = accelerator.prepare(model, optimizer)
    main = accelerator.is_main_process
    steps = step_runner(
        model,
        optimizer,
        scheduler,
        accelerator,
        recipe,
        tokenizer.pad_token_id,
        position_offset,
        precision,
        say=lambda text: notice(text) if main else None,
    )

    if not resume and main:
        clear_output_dir(output_dir)  # only now: a run that failed to start has not cost the old one
    elif main:
        remove_stale_saves(output_dir)  # a kill during the best model's save left its staging folder
    checkpoints = Checkpoints(
        output_dir, recipe.keep_checkpoints, accelerator, model, optimizer, scheduler, recipe.model_dump(), splits.md5
    )
    state = RunState()
    if resume_from:
        state = checkpoints.restore(*resume_from)  # weights, optimizer, scheduler, scaler, RNGs
        if main:
            trim_log(output_dir / "train_log.csv", state.global_step)
    order = random.Random(recipe.seed)
    if state.order_rng is not None:
        order.setstate(rng_from_json(state.order_rng))
    warmup = int(recipe.warmup_ratio * total_steps)
    tracking.start(accelerator, recipe, output_dir.name)  # after the folder is cleared: the tracker's files are this run's
    return Run(
        recipe=recipe,
        splits=splits,
        labels=labels,
        output_dir=output_dir,
        resume_from=resume_from,
        accelerator=accelerator,
        precision=precision,
        precision_why=precision_why,
        code_version=code_version,
        tokenizer=tokenizer,
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        windows=windows,
        windows_of=windows_of,
        words_in_sentence=[len(s.words) for s in sentences],
        piece_lengths=[sum(len(windows[i].input_ids) for i in w) for w in windows_of],
        group_by_length=group_by_length,
        groups=groups,
        steps=steps,
        checkpoints=checkpoints,
        state=state,
        log=RunLog(output_dir, enabled=main, append=resume_from is not None),
        order=order,
        divergence=diagnostics.DivergenceWatch(accelerator.device, recipe.learning_rate),
        loss_watch=diagnostics.LossWatch(len(labels), recipe.learning_rate, warmup),
        progress=progress,
        say=say,
    )


def _training_windows(recipe: Recipe, splits: Splits, labels: list[str], tokenizer, model, accelerator):
    """The training sentences as model windows, each sentence's window indices, packing's position offset
    (None: one window a row) and whether steps are length-grouped."""
    main = accelerator.is_main_process
    max_pieces = max_pieces_for(model, tokenizer)
    position_offset = packing_offset(model) if recipe.pack else None
    if recipe.pack and position_offset is None and main:
        notice(
            f"pack: not known to be exact for {model.config.model_type} models, so each window gets its own row"
            + (" (and steps are length-grouped to keep the padding low)" if recipe.group_by_length is None else "")
        )
    group_by_length = position_offset is None if recipe.group_by_length is None else recipe.group_by_length
    sentences = splits.train.sentences
    label2id = {label: i for i, label in enumerate(labels)}
    windows = build_windows(
        tokenizer,
        [s.words for s in sentences],
        max_pieces,
        [[label2id[t] for t in s.tags] for s in sentences],
        model.config,
        [s.document for s in sentences],
        shared_pieces=recipe.shared_window_pieces,
        shared_most=recipe.sentences_per_step,
    )
    windows_of: list[list[int]] = [[] for _ in sentences]
    for index, window in enumerate(windows):
        windows_of[window.sequence].append(index)
    message = diagnostics.long_sentences(sum(len(w) > 1 for w in windows_of), len(sentences), max_pieces)
    if message and main:
        notice(message, "diagnosis")
    return windows, windows_of, position_offset, group_by_length


def shared_groups(windows: Sequence[Window]) -> list[list[int]]:
    """The sentences of each training input, in order (a sentence with an input of its own, or several, alone)."""
    groups: list[list[int]] = []
    key = None
    for window in windows:
        if window.input_key >= 0 and window.input_key == key:
            groups[-1].append(window.sequence)
        elif not groups or window.sequence != groups[-1][-1]:
            groups.append([window.sequence])
        key = window.input_key
    return groups


def steps_per_epoch(sentences: int, sentences_per_step: int, groups: Sequence[Sequence[int]] | None) -> int:
    """Optimizer steps in an epoch: the schedule's length (data/features.py's `shared_steps` when inputs are shared)."""
    if groups is None:
        return math.ceil(sentences / sentences_per_step)
    return shared_steps_per_epoch([len(g) for g in groups], sentences_per_step)


def _optimizer(model, recipe: Recipe) -> torch.optim.AdamW:
    """AdamW (with no weight decay, the Trainer's Adam); a CRF's transition scores get their own peak rate:
    they start near zero and must travel ~1 in a few thousand steps, which the encoder's rate would not allow."""
    crf_params = list(model.crf.parameters()) if recipe.crf else []
    groups = [{"params": [p for p in model.parameters() if all(p is not c for c in crf_params)]}]
    if crf_params:
        groups.append({"params": crf_params, "lr": recipe.crf_learning_rate})
    return torch.optim.AdamW(
        groups,
        lr=recipe.learning_rate,
        betas=(recipe.adam_beta1, recipe.adam_beta2),
        eps=recipe.adam_epsilon,
        weight_decay=recipe.weight_decay,
        fused=True,
    )  # fused: one pass, same update


def lr_schedule(recipe: Recipe, total_steps: int) -> Callable[[int], float]:
    """The learning-rate factor at each step: linear warm-up, then linear decay to 0 (or constant)."""
    warmup = int(recipe.warmup_ratio * total_steps)

    def factor(step: int) -> float:
        if step < warmup:
            return step / max(1, warmup)
        if recipe.lr_scheduler == "constant":
            return 1.0
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return factor


def read_options(recipe: Recipe) -> ReadOptions:
    """How the recipe says to read its data files."""
    names = [n.strip() for n in recipe.label_names.split(",")] if recipe.label_names else None
    return ReadOptions(
        tag_column=recipe.tag_column,
        ragged=recipe.ragged_columns,
        tokens_field=recipe.tokens_field,
        tags_field=recipe.tags_field,
        text_field=recipe.text_field,
        spans_field=recipe.spans_field,
        label_names=names,
        strict_spans=recipe.strict_spans,
        overlaps=recipe.overlaps,
    )
