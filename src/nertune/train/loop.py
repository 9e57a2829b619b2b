"""Fine-tune an encoder for NER: the whole loop, top to bottom.

    data -> windows -> random steps of 16 sentences, packed rows -> weighted loss
    -> clip -> AdamW -> linear decay -> evaluate each epoch -> keep the best

Accelerate handles the device, mixed precision and data parallelism; the
accumulation is ours (see train/loss.py), so the gradient of each step is the
seed recipe's whatever the physical batching. Speed without changing what is computed: on one
GPU each packed shape's whole step (forward, loss, backward, clip, AdamW) replays from a CUDA graph
(train/graphed_step.py; with a CRF head the forward and backward alone, train/graphs.py); on a
CPU the same dropout draws its masks from fewer random bits (train/dropout.py).

A run is never lost: checkpoints every N steps and at each epoch end
(train/checkpoint.py), --resume continues bit for bit, Ctrl-C / SIGTERM save
and stop (train/signals.py), and the numbers are watched as they come
(train/diagnostics.py): NaN stops the run, the rest are explained.
"""

from __future__ import annotations

import math
import random
import signal
import time
from datetime import datetime
from pathlib import Path

import torch

from nertune.data.features import length_grouped_steps
from nertune.data.packing import packing_offset
from nertune.data.splits import load_splits
from nertune.evaluate.predict import build_windows, max_pieces_for
from nertune.evaluate.run import evaluate_sentences
from nertune.model.crf import load_crf
from nertune.model.load import load_for_training, load_tokenizer, remove_stale_saves, save_model
from nertune.train import diagnostics
from nertune.train.checkpoint import (
    Checkpoints, RunState, check_output_dir, clear_output_dir, find_checkpoint, new_run_dir, remove_checkpoints, rng_from_json,
    rng_to_json, trim_log,
)
from nertune.train.dropout import use_cheap_dropout
from nertune.train.embedding_grad import KeptEmbeddingGradient
from nertune.train.embedding_rows import train_used_rows_only
from nertune.train.graphed_step import GraphedStep
from nertune.train.graphs import GraphedForward, graphs_unavailable
from nertune.train.loss import window_weights
from nertune.train.precision import choose_precision, fresh_accelerator
from nertune.train.recipe import Recipe, labels_for
from nertune.train.signals import StopRequests, TrainingInterrupted, say_on_interrupt
from nertune.train.step import forward_backward
from nertune.train.report import RunLog, console, git_sha, run_info, stop_progress, write_run_files


def train_run(recipe: Recipe, progress: bool = True, resume: bool = False, overwrite: bool = False) -> dict:
    """Train as `recipe` says; `resume` continues the run in recipe.output_dir from its latest checkpoint;
    `overwrite` replaces the finished run there. Each call starts and leaves a clean Accelerate state."""
    try:
        with fresh_accelerator():
            return _train(recipe, progress, resume, overwrite)
    finally:
        stop_progress()


def _train(recipe: Recipe, progress: bool, resume: bool, overwrite: bool) -> dict:
    from accelerate import Accelerator
    from accelerate.utils import AutocastKwargs, broadcast_object_list, set_seed
    from rich.markup import escape

    # ---- data first: a bad file fails before anything heavy loads ----
    splits = load_splits(recipe.data, recipe.train, recipe.validation, recipe.test, recipe.max_train_sentences, recipe.max_eval_sentences,
                         recipe.ragged_columns)
    if splits.train is None:
        from nertune.errors import NertuneError

        raise NertuneError("no training data", fix="use --data conll2003 or --train FILE")
    labels = labels_for(recipe.model, splits.labels)
    label2id = {label: i for i, label in enumerate(labels)}
    train_sentences = splits.train.sentences
    output_dir = Path(recipe.output_dir or new_run_dir(f"runs/{datetime.now().strftime('%Y%m%d-%H%M%S')}"))
    recipe_fields = recipe.model_dump()
    # Also before the model loads: a resume that cannot work says so at once.
    resume_from = find_checkpoint(recipe.output_dir, recipe_fields, splits.md5) if resume else None
    if not resume:
        check_output_dir(output_dir, overwrite)

    on_gpu = torch.cuda.is_available()
    precision, precision_notice, precision_why = choose_precision(recipe.mixed_precision, on_gpu)
    # Under torchrun on a CPU machine Accelerate only distributes when told to use the CPU.
    # Autocast's weight-cast cache off on a GPU: CUDA graph capture requires it (train/graphs.py), and a
    # weight is cast once a forward pass anyway.
    accelerator = Accelerator(mixed_precision=precision, cpu=not on_gpu,
                              kwargs_handlers=[AutocastKwargs(cache_enabled=False)] if on_gpu else None)
    main = accelerator.is_main_process
    world = accelerator.num_processes
    say = console.print if main else (lambda *a, **k: None)

    def diagnose(message: str | None) -> None:
        if message:
            say(f"[yellow]diagnosis:[/] {escape(message)}")

    if precision_notice:
        say(f"[yellow]notice:[/] {precision_notice}")
    for notice in splits.notices():
        say(f"[yellow]notice:[/] {notice}")
    set_seed(recipe.seed)
    code_version = git_sha()  # the code that trains: taken now, edits during a long run do not change it

    # ---- model -----------------------------------------------------------
    tokenizer = load_tokenizer(recipe.model)
    model = load_for_training(recipe.model, labels, recipe.dropout, recipe.casing, recipe.context_pieces, recipe.crf)
    if not on_gpu:  # torch's CPU dropout mask is 11% of a step: the same dropout, drawn cheaper (train/dropout.py)
        use_cheap_dropout(model)
    max_pieces = max_pieces_for(model, tokenizer)
    position_offset = packing_offset(model) if recipe.pack else None
    if recipe.pack and position_offset is None:
        say(f"[yellow]notice:[/] pack: not known to be exact for {model.config.model_type} models, so each window gets its own row"
            + (" (and steps are length-grouped to keep the padding low)" if recipe.group_by_length is None else ""))
    group_by_length = position_offset is None if recipe.group_by_length is None else recipe.group_by_length
    windows = build_windows(tokenizer, [s.words for s in train_sentences], max_pieces, [[label2id[t] for t in s.tags] for s in train_sentences],
                            model.config, [s.document for s in train_sentences])
    windows_of: list[list[int]] = [[] for _ in train_sentences]
    for index, window in enumerate(windows):
        windows_of[window.sequence].append(index)
    diagnose(diagnostics.long_sentences(sum(len(w) > 1 for w in windows_of), len(train_sentences), max_pieces))
    words_in_sentence = [len(s.words) for s in train_sentences]
    piece_lengths = [sum(len(windows[i].input_ids) for i in w) for w in windows_of]

    # ---- optimisation: AdamW with no weight decay is the Trainer's Adam ----
    # Rows of the word embedding no training window uses would never move: leave them out (same updates,
    # on every device and world size alike, so a checkpoint resumes anywhere).
    train_used_rows_only(model, {i for w in windows for i in w.input_ids}, recipe.weight_decay)
    per_step = recipe.sentences_per_step
    crf_params = list(model.crf.parameters()) if recipe.crf else []
    # A CRF's ~100 transition scores start near zero and need to travel ~1 in a few thousand steps:
    # at the encoder's rate (<= lr per Adam step) they barely move, so they get their own.
    groups = [{"params": [p for p in model.parameters() if all(p is not c for c in crf_params)]}]
    if crf_params:
        groups.append({"params": crf_params, "lr": recipe.crf_learning_rate})
    optimizer = torch.optim.AdamW(
        groups, lr=recipe.learning_rate, betas=(recipe.adam_beta1, recipe.adam_beta2),
        eps=recipe.adam_epsilon, weight_decay=recipe.weight_decay,
        # The fused kernel (CPU and CUDA) is the same update in one pass: 33 ms a step for MiniLM on 2 cores, vs 139 foreach / 164 for-loop.
        fused=True,
    )
    steps_per_epoch = math.ceil(len(train_sentences) / per_step)
    total_steps = steps_per_epoch * recipe.epochs
    warmup = int(recipe.warmup_ratio * total_steps)

    def lr_factor(step: int) -> float:
        if step < warmup:
            return step / max(1, warmup)
        if recipe.lr_scheduler == "constant":
            return 1.0
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    model, optimizer = accelerator.prepare(model, optimizer)
    kept_embedding_grad = KeptEmbeddingGradient(model) if (not on_gpu and world == 1) else None
    graphs = None
    if recipe.cuda_graphs is not False:
        why_not = graphs_unavailable(accelerator.device, world, position_offset, precision)
        if why_not is None:
            graphs = GraphedForward(model)
        elif recipe.cuda_graphs:
            say(f"[yellow]notice:[/] cuda_graphs: {why_not}; the steps run eagerly")
    device = accelerator.device
    # Softmax heads: the whole step in one graph (train/graphed_step.py); a CRF keeps the graphed forward alone.
    whole_step = None
    if graphs and not recipe.crf:
        whole_step = GraphedStep(model, optimizer, recipe.max_grad_norm, accelerator.autocast, device, tokenizer.pad_token_id,
                                 position_offset, recipe.max_tokens_per_forward)
    whole_step_failure_said = False

    def capture_seconds() -> float:
        return (graphs.capture_seconds if graphs else 0.0) + (whole_step.capture_seconds if whole_step else 0.0)

    autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)

    # ---- where the run is: fresh, or the latest checkpoint's state ---------
    if not resume and main:
        clear_output_dir(output_dir)  # only now: a run that failed to start has not cost the old one
    elif main:
        remove_stale_saves(output_dir)  # a kill during the best model's save left its staging folder
    checkpoints = Checkpoints(output_dir, recipe.keep_checkpoints, accelerator, model, optimizer, scheduler, recipe_fields, splits.md5)
    state = RunState()
    if resume_from:
        state = checkpoints.restore(*resume_from)  # weights, optimizer, scheduler, scaler, RNGs
        if main:
            trim_log(output_dir / "train_log.csv", state.global_step)
    log = RunLog(output_dir, enabled=main, append=resume_from is not None)
    order = random.Random(recipe.seed)  # the data order: each epoch's steps are drawn from it in turn
    if state.order_rng is not None:
        order.setstate(rng_from_json(state.order_rng))
    divergence = diagnostics.DivergenceWatch(device, recipe.learning_rate)
    loss_watch = diagnostics.LossWatch(len(labels), recipe.learning_rate, warmup)

    def checkpoint(epoch_loss: torch.Tensor, running: torch.Tensor) -> Path:
        """Save where the run is (all processes join: sums and RNG states are gathered)."""
        divergence.check(state.global_step, accelerator, checkpoint=checkpoints.last)  # never save diverged weights
        state.epoch_loss = accelerator.reduce(epoch_loss, "sum").item()
        state.running = accelerator.reduce(running, "sum").item()
        return checkpoints.save(state)

    def stop_agreed(stop: StopRequests) -> bool:
        """A signal may reach only some processes: they stop together or not at all (a collective call)."""
        if world == 1:
            return stop.requested
        return accelerator.reduce(torch.tensor(float(stop.requested), device=device), "sum").item() > 0

    with StopRequests() as stop:  # installed before the first line a user (or a test) may react to
        split = f" = {per_step // world}{'-' + str(-(-per_step // world)) if per_step % world else ''} on each of {world} processes" if world > 1 else ""
        say(f"training {recipe.model} on {len(train_sentences):,} sentences, {per_step} sentences per optimizer step{split}, "
            f"{recipe.epochs} epochs ({total_steps:,} steps), {precision if precision != 'no' else 'fp32'} on {device}"
            + (f", CUDA graphs ({'the whole step' if whole_step else 'forward and backward'}: each new packed shape captured once, its time reported apart)" if graphs else ""))
        if resume_from:
            say(f"resumed from step {state.global_step} (epoch {state.epoch}, step {state.steps_done} of {steps_per_epoch}) of {resume_from[0]}")
        for epoch in range(state.epoch, recipe.epochs + 1):
            stopping = diagnostics.patience_exhausted(state.history, recipe.patience)
            if stopping:
                say(stopping)
                break
            state.epoch, state.order_rng = epoch, rng_to_json(order.getstate())
            steps = length_grouped_steps(piece_lengths, per_step, order, group_by_length)
            # Sums so far in this epoch: zero, or a checkpoint's totals (carried by the main process alone).
            share = 1.0 if main else 0.0
            epoch_loss = torch.tensor(state.epoch_loss * share, device=device)
            running = torch.tensor(state.running * share, device=device)
            model.train()
            bar = log.progress(f"epoch {epoch}/{recipe.epochs}", len(steps)) if progress else None
            for _ in range(state.steps_done if bar else 0):
                bar.skip()
            started = time.perf_counter() - state.epoch_seconds
            for index in range(state.steps_done, len(steps)):
                step_sentences = steps[index]
                # This process's share of the step's sentences; every process knows the whole step.
                mine = step_sentences[accelerator.process_index :: world]
                step_windows = [windows[i] for s in mine for i in windows_of[s]]
                step_words = sum(words_in_sentence[s] for s in step_sentences)
                weights = window_weights(step_windows, words_in_sentence, recipe.accumulation, per_step, step_words, world)
                captured = capture_seconds()
                graphed = whole_step.step(step_windows, weights) if whole_step else None
                if graphed is not None:  # forward, loss, backward, clip and AdamW replayed from one graph
                    step_loss, grad_norm = graphed
                else:
                    step_loss = forward_backward(
                        model, step_windows, weights, tokenizer.pad_token_id, device, recipe.max_tokens_per_forward,
                        backward=accelerator.backward, no_sync=(lambda: accelerator.no_sync(model)) if world > 1 else None,
                        autocast=accelerator.autocast, position_offset=position_offset,
                        # with the whole step graphed, its few eager steps (the first, any too big) capture nothing more
                        graphs=graphs if not whole_step or whole_step.failed else None,
                    )
                    if not step_windows:  # a process with no sentences this step still joins the all-reduce
                        accelerator.backward(sum(p.sum() * 0 for p in model.parameters()))
                    grad_norm = accelerator.clip_grad_norm_(model.parameters(), recipe.max_grad_norm) if recipe.max_grad_norm else None
                    optimizer.step()
                    if whole_step and whole_step.failed and not whole_step_failure_said:
                        say(f"[yellow]notice:[/] CUDA graph of the whole step failed ({escape(whole_step.failed)}); "
                            "the forward and backward stay graphed, the rest runs eagerly")
                        whole_step_failure_said = True
                started += capture_seconds() - captured  # a capture is reported apart, not as training time
                if not accelerator.optimizer_step_was_skipped:
                    scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                if kept_embedding_grad:
                    kept_embedding_grad.reset()
                # fp16 overflows give inf gradient norms by design (the scaler skips those steps)
                divergence.add(step_loss, grad_norm if precision != "fp16" else None)
                state.global_step += 1
                state.steps_done = index + 1
                state.seen += len(step_sentences)
                running += step_loss / world
                state.since_log += 1
                epoch_loss += step_loss / world
                if state.global_step % 10 == 0 or state.global_step == total_steps:
                    # One host sync every 10 steps, not every step.
                    loss_value = accelerator.reduce(running, "sum").item() / state.since_log
                    divergence.check(state.global_step, accelerator, loss_value, checkpoints.last)
                    running.zero_()
                    state.since_log = 0
                    elapsed = time.perf_counter() - started
                    log.step(state.global_step, epoch, loss_value, scheduler.get_last_lr()[0],
                             None if grad_norm is None else float(grad_norm), state.seen / max(elapsed, 1e-9))
                    diagnose(loss_watch.observe(state.global_step, loss_value))
                    if bar:
                        bar.update(loss=loss_value, rate=state.seen / max(elapsed, 1e-9), lr=scheduler.get_last_lr()[0])
                if bar:
                    bar.advance()
                # One process checks after every step; several agree where they sync anyway, every 10 steps.
                stop_now = stop_agreed(stop) if world == 1 or state.since_log == 0 else False
                every = recipe.save_every_steps
                periodic = every and state.global_step % every == 0 and index + 1 < len(steps)  # epoch ends save anyway
                if stop_now or periodic:
                    state.epoch_seconds = time.perf_counter() - started
                    saved_at = time.perf_counter()
                    path = checkpoint(epoch_loss, running)
                    started += time.perf_counter() - saved_at  # saving is not training time
                    if stop_now:
                        if bar:
                            bar.close()
                        raise TrainingInterrupted(stop.signum or signal.SIGTERM, state.global_step, path, output_dir)
            epoch_seconds = time.perf_counter() - started
            if bar:
                bar.close()
            train_loss = accelerator.reduce(epoch_loss, "sum").item() / len(steps)
            divergence.check(state.global_step, accelerator, train_loss, checkpoints.last)

            # ---- evaluate (main process, whole validation split) -----------
            record = {"epoch": epoch, "train_loss": train_loss, "train_seconds": epoch_seconds,
                      "sentences_per_second": len(train_sentences) / epoch_seconds}
            if main and splits.validation is not None:
                result = evaluate_sentences(accelerator.unwrap_model(model), tokenizer, splits.validation.sentences, device, autocast_dtype)
                record["validation"] = _headline(result["metrics"])
                say(f"epoch {epoch}: train loss {train_loss:.4f} | validation loss {record['validation']['loss']:.4f} "
                    f"F1 {record['validation']['f1']:.4f} ({record['sentences_per_second']:.1f} sentences/s)")
            if world > 1:  # every process keeps the same history, so early stopping agrees
                record = broadcast_object_list([record], from_process=0)[0]
            state.history.append(record)
            f1 = record.get("validation", {}).get("f1", 0.0)
            if splits.validation is None or f1 > state.best_f1:
                state.best_f1, state.best_epoch = f1, epoch
                if main:
                    save_model(accelerator.unwrap_model(model), tokenizer, output_dir)
            if main:
                diagnose(diagnostics.epoch_loss_rose(state.history, recipe.learning_rate))
                diagnose(diagnostics.overfitting(state.history, recipe.patience or 2))
                if "validation" in record:
                    diagnose(diagnostics.weak_f1(f1, state.global_step, recipe.learning_rate, train_loss, len(labels), splits.train, splits.validation))
            accelerator.wait_for_everyone()

            # ---- the epoch is done: the next position, saved ---------------
            state.train_seconds += epoch_seconds
            state.epoch, state.steps_done, state.order_rng = epoch + 1, 0, rng_to_json(order.getstate())
            state.epoch_loss = state.running = state.epoch_seconds = 0.0
            state.seen = state.since_log = 0
            path = checkpoint(torch.zeros((), device=device), torch.zeros((), device=device))
            if stop_agreed(stop):  # a signal during evaluation: the epoch's checkpoint is the place to resume
                raise TrainingInterrupted(stop.signum or signal.SIGTERM, state.global_step, path, output_dir)
        say_on_interrupt(f"interrupted during the final evaluation: the best model (epoch {state.best_epoch}) is saved in {output_dir}; "
                         f"score it with: nertune evaluate {output_dir}")

    # ---- final: the best epoch's weights on validation and test -------------
    metrics: dict = {}
    if main:
        final_model = accelerator.unwrap_model(model)
        if state.best_epoch != state.history[-1]["epoch"]:  # the weights in memory are the last epoch's
            from safetensors.torch import load_file

            final_model.load_state_dict(load_file(output_dir / "model.safetensors", device=str(device)), strict=False)
            load_crf(final_model, output_dir)  # a CRF head's best-epoch scores (crf.safetensors)
        reports = {}
        for name in ("validation", "test"):
            split = getattr(splits, name)
            if split is not None:
                reports[name] = evaluate_sentences(final_model, tokenizer, split.sentences, device, autocast_dtype)
        metrics = {
            "epochs": state.history,
            "best_epoch": state.best_epoch,
            **{name: r["metrics"] for name, r in reports.items()},
            "recipe": recipe.model_dump(),
            "model": recipe.model,
            "labels": labels,
            "train_sentences": len(train_sentences),
            "train_seconds": state.train_seconds,
            "precision": precision,
            "precision_why": precision_why,
            "cuda_graphs": {**graphs.report(), "whole_step": whole_step.report() if whole_step else None} if graphs else None,
            **run_info(world, splits.md5, code_version),
        }
        if len(state.history) < recipe.epochs:
            metrics["stopped_early_after_epoch"] = state.history[-1]["epoch"]
        write_run_files(output_dir, metrics, recipe, reports, splits)
        remove_checkpoints(output_dir)  # the run is complete: its model directory is the result
        metrics["output_dir"] = str(output_dir)
    accelerator.wait_for_everyone()
    return metrics


def _headline(metrics: dict) -> dict:
    return {k: metrics[k] for k in ("loss", "precision", "recall", "f1", "accuracy")}
