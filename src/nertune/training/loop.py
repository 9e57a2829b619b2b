"""Fine-tune an encoder for NER: setup -> for each epoch: steps -> end of epoch -> finish.

    data -> windows -> random steps of 16 sentences, packed rows -> weighted loss
    -> clip -> AdamW -> linear decay -> evaluate each epoch -> keep the best

`setup` (training/setup.py) builds the run; `train_epoch` runs its steps through the step runner chosen
there (training/step.py: graphed or eager, the same gradient); `end_epoch` evaluates, keeps the best and
saves a checkpoint; `finish` scores the best epoch (or the average of the last ones, training/averaging.py)
on validation and test and writes the run's files.
Accelerate handles the device, mixed precision and data parallelism; the accumulation is ours
(model/loss.py), so each step's gradient is the seed recipe's whatever the physical batching.

A run is never lost: checkpoints every N steps and at each epoch end (training/checkpoint.py), --resume
continues bit for bit, Ctrl-C / SIGTERM save and stop (training/signals.py), and the numbers are watched
as they come (training/diagnostics.py): NaN stops the run, the rest are explained.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import torch
from accelerate.utils import broadcast_object_list
from safetensors.torch import load_file

from nertune.console import stop_progress
from nertune.data.features import length_grouped_steps, shared_steps
from nertune.data.labels import parse_label_map
from nertune.evaluate.model_scores import evaluate_sentences
from nertune.model.crf import load_crf
from nertune.model.load import save_model
from nertune.model.loss import window_weights
from nertune.training import diagnostics, tracking
from nertune.training.averaging import averaged, averaged_epochs, keep_epoch, load_average, remove_epochs
from nertune.training.checkpoint import remove_checkpoints, rng_to_json
from nertune.training.precision import flush_denormals, fresh_accelerator
from nertune.training.recipe import Recipe
from nertune.training.run_files import peak_memory, run_info, write_run_files
from nertune.training.setup import Run, setup
from nertune.training.signals import StopRequests, TrainingInterrupted, say_on_interrupt


def train_run(recipe: Recipe, progress: bool = True, resume: bool = False, overwrite: bool = False) -> dict:
    """Train as `recipe` says; `resume` continues the run in recipe.output_dir from its latest checkpoint;
    `overwrite` replaces the finished run there. Each call starts and leaves a clean Accelerate state."""
    try:
        with fresh_accelerator(), flush_denormals():
            run = setup(recipe, resume, overwrite, progress)
            try:
                return train(run)
            finally:
                run.log.close()  # finished, failed or interrupted: the step log is flushed and closed
                tracking.finish(run.accelerator)
    finally:
        stop_progress()


def train(run: Run) -> dict:
    """The epochs of a set-up run, then its final scores (metrics.json's content; {} on other processes)."""
    recipe, state = run.recipe, run.state
    with StopRequests() as stop:  # installed before the first line a user (or a test) may react to
        run.say(_first_line(run))
        if run.resume_from:
            run.say(
                f"resumed from step {state.global_step} (epoch {state.epoch}, step {state.steps_done} of "
                f"{run.steps_per_epoch}) of {run.resume_from[0]}"
            )
        for epoch in range(state.epoch, recipe.epochs + 1):
            stopping = diagnostics.patience_exhausted(state.history, recipe.patience)
            if stopping:
                run.say(stopping)
                break
            seconds, train_loss = train_epoch(run, epoch, stop)
            end_epoch(run, epoch, seconds, train_loss, stop)
        say_on_interrupt(
            f"interrupted during the final evaluation: the best model (epoch {state.best_epoch}) is saved in "
            f"{run.output_dir}; score it with: nertune evaluate {run.output_dir}"
        )
    return finish(run)


def _share(run: Run, step_sentences: list[int]) -> list[int]:
    """This process's sentences of a step: every world-th one, or, when groups share inputs, whole groups, each to
    the process with the fewest sentences so far (every process deals the same way, so the shares add up to the step)."""
    if run.world == 1:
        return step_sentences
    if run.groups is None:
        return step_sentences[run.accelerator.process_index :: run.world]
    groups, last = [], None
    for sentence in step_sentences:  # a step holds its groups whole and in order
        if groups and run.group_of[sentence] == last:
            groups[-1].append(sentence)
        else:
            groups.append([sentence])
        last = run.group_of[sentence]
    loads, mine = [0] * run.world, []
    for group in groups:
        process = loads.index(min(loads))
        loads[process] += len(group)
        if process == run.accelerator.process_index:
            mine.extend(group)
    return mine


def train_epoch(run: Run, epoch: int, stop: StopRequests) -> tuple[float, float]:
    """The epoch's optimizer steps (from where a resumed run left off); returns its seconds of training and mean step loss."""
    state, accelerator, world = run.state, run.accelerator, run.world
    state.epoch, state.order_rng = epoch, rng_to_json(run.order.getstate())
    if run.groups is None:
        steps = length_grouped_steps(run.piece_lengths, run.sentences_per_step, run.order, run.group_by_length)
    else:
        steps = shared_steps(run.groups, run.sentences_per_step, run.order)
    # Sums so far in this epoch: zero, or a checkpoint's totals (carried by the main process alone).
    share = 1.0 if run.main else 0.0
    epoch_loss = torch.tensor(state.epoch_loss * share, device=run.device)
    running = torch.tensor(state.running * share, device=run.device)
    run.model.train()
    bar = run.log.progress(f"epoch {epoch}/{run.recipe.epochs}", len(steps)) if run.progress else None
    for _ in range(state.steps_done if bar else 0):
        bar.skip()
    started = time.perf_counter() - state.epoch_seconds
    for index in range(state.steps_done, len(steps)):
        step_sentences = steps[index]
        mine = _share(run, step_sentences)  # this process's share; all know the whole step
        step_windows = [run.windows[i] for s in mine for i in run.windows_of[s]]
        step_words = sum(run.words_in_sentence[s] for s in step_sentences)
        weights = window_weights(step_windows, run.words_in_sentence, run.recipe.accumulation, run.sentences_per_step, step_words, world)
        result = run.steps(step_windows, weights)
        started += result.capture_seconds  # a capture is reported apart, not as training time
        # fp16 overflows give inf gradient norms by design (the scaler skips those steps)
        run.divergence.add(result.loss, result.grad_norm if run.precision != "fp16" else None)
        state.global_step, state.steps_done, state.seen = state.global_step + 1, index + 1, state.seen + len(step_sentences)
        running += result.loss / world
        epoch_loss += result.loss / world
        state.since_log += 1
        if state.global_step % 10 == 0 or state.global_step == run.total_steps:  # one host sync every 10 steps
            loss_value = accelerator.reduce(running, "sum").item() / state.since_log
            run.divergence.check(state.global_step, accelerator, loss_value, run.checkpoints.last)
            running.zero_()
            state.since_log = 0
            rate, lr = state.seen / max(time.perf_counter() - started, 1e-9), run.scheduler.get_last_lr()[0]
            grad_norm = None if result.grad_norm is None else float(result.grad_norm)
            run.log.step(state.global_step, epoch, loss_value, lr, grad_norm, rate)
            values = {"train/loss": loss_value, "train/learning_rate": lr, "train/sentences_per_second": rate}
            tracking.log(accelerator, values | ({"train/grad_norm": grad_norm} if grad_norm is not None else {}), state.global_step)
            run.diagnose(run.loss_watch.observe(state.global_step, loss_value))
            if bar:
                bar.update(loss=loss_value, rate=rate, lr=lr)
        if bar:
            bar.advance()
        # One process checks after every step; several agree where they sync anyway, every 10 steps.
        stop_now = _stop_agreed(run, stop) if world == 1 or state.since_log == 0 else False
        every = run.recipe.save_every_steps
        if stop_now or (every and state.global_step % every == 0 and index + 1 < len(steps)):  # epoch ends save anyway
            state.epoch_seconds = time.perf_counter() - started
            saved_at = time.perf_counter()
            path = _checkpoint(run, epoch_loss, running)
            started += time.perf_counter() - saved_at  # saving is not training time
            if stop_now:
                if bar:
                    bar.close()
                raise TrainingInterrupted(stop.signum or signal.SIGTERM, state.global_step, path, run.output_dir)
    seconds = time.perf_counter() - started
    if bar:
        bar.close()
    train_loss = accelerator.reduce(epoch_loss, "sum").item() / len(steps)
    run.divergence.check(state.global_step, accelerator, train_loss, run.checkpoints.last)
    return seconds, train_loss


def end_epoch(run: Run, epoch: int, epoch_seconds: float, train_loss: float, stop: StopRequests) -> None:
    """Evaluate on validation (main process), keep the best weights, diagnose, save the next position."""
    state, accelerator = run.state, run.accelerator
    record = {
        "epoch": epoch,
        "train_loss": train_loss,
        "train_seconds": epoch_seconds,
        "sentences_per_second": len(run.splits.train.sentences) / epoch_seconds,
    }
    validation = run.splits.validation
    if run.main and validation is not None:
        result = evaluate_sentences(
            accelerator.unwrap_model(run.model),
            run.tokenizer,
            validation.sentences,
            run.device,
            run.autocast_dtype,
            max_tokens=run.recipe.eval_max_tokens,
        )
        record["validation"] = {k: result["metrics"][k] for k in ("loss", "precision", "recall", "f1", "accuracy")}
        tracking.log(accelerator, tracking.scores("validation", result["metrics"]) | {"train/epoch_loss": train_loss}, state.global_step)
        run.say(
            f"epoch {epoch}: train loss {train_loss:.4f} | validation loss {record['validation']['loss']:.4f} "
            f"F1 {record['validation']['f1']:.4f} ({record['sentences_per_second']:.1f} sentences/s)"
        )
    if run.world > 1:  # every process keeps the same history, so early stopping agrees
        record = broadcast_object_list([record], from_process=0)[0]
    state.history.append(record)
    f1 = record.get("validation", {}).get("f1", 0.0)
    if validation is None or f1 > state.best_f1:
        state.best_f1, state.best_epoch = f1, epoch
        if run.main:
            save_model(accelerator.unwrap_model(run.model), run.tokenizer, run.output_dir)
    if run.main and averaged(run.recipe, epoch):
        keep_epoch(accelerator.unwrap_model(run.model), run.output_dir, epoch)
    if run.main:
        lr = run.recipe.learning_rate
        run.diagnose(diagnostics.epoch_loss_rose(state.history, lr))
        run.diagnose(diagnostics.overfitting(state.history, run.recipe.patience or 2))
        if "validation" in record:
            run.diagnose(diagnostics.weak_f1(f1, state.global_step, lr, train_loss, len(run.labels), run.splits.train, validation))
    accelerator.wait_for_everyone()
    state.train_seconds += epoch_seconds
    state.epoch, state.steps_done, state.order_rng = epoch + 1, 0, rng_to_json(run.order.getstate())
    state.epoch_loss = state.running = state.epoch_seconds = 0.0
    state.seen = state.since_log = 0
    path = _checkpoint(run, torch.zeros((), device=run.device), torch.zeros((), device=run.device))
    if _stop_agreed(run, stop):  # a signal during evaluation: the epoch's checkpoint is the place to resume
        raise TrainingInterrupted(stop.signum or signal.SIGTERM, state.global_step, path, run.output_dir)


def finish(run: Run) -> dict:
    """The best epoch's weights scored on validation and test; the run's files written; checkpoints removed."""
    state, accelerator, metrics = run.state, run.accelerator, {}
    if run.main:
        model = accelerator.unwrap_model(run.model)
        average = load_average(model, run.output_dir, averaged_epochs(run.recipe)) if run.recipe.average_epochs else []
        if run.recipe.average_epochs and not average:
            run.notice("average_epochs: the run stopped before every epoch to average was done; the best epoch is kept")
        if average:  # the run's model is the mean of the last epochs' weights, not the best epoch's
            save_model(model, run.tokenizer, run.output_dir)
        elif state.best_epoch != state.history[-1]["epoch"]:  # the weights in memory are the last epoch's
            model.load_state_dict(load_file(run.output_dir / "model.safetensors", device=str(run.device)), strict=False)
            load_crf(model, run.output_dir)  # a CRF head's best-epoch scores (crf.safetensors)
        reports = {
            name: evaluate_sentences(
                model, run.tokenizer, split.sentences, run.device, run.autocast_dtype, max_tokens=run.recipe.eval_max_tokens
            )
            for name in ("validation", "test")
            if (split := getattr(run.splits, name)) is not None
        }
        final = {"validation": "final_validation", "test": "test"}
        tracking.log(
            accelerator,
            {k: v for name, r in reports.items() for k, v in tracking.scores(final[name], r["metrics"]).items()},
            state.global_step,
        )
        metrics = {
            "epochs": state.history,
            "best_epoch": state.best_epoch,
            **({"averaged_epochs": average} if average else {}),
            **{name: r["metrics"] for name, r in reports.items()},
            "recipe": run.recipe.model_dump(),
            "model": run.recipe.model,
            "labels": run.labels,
            "label_map": parse_label_map(run.recipe.label_map),
            "train_sentences": len(run.splits.train.sentences),
            "train_seconds": state.train_seconds,
            "precision": run.precision,
            "precision_why": run.precision_why,
            "cuda_graphs": run.steps.report(),
            "peak_memory": peak_memory(run.device),
            **run_info(run.world, run.splits.md5, run.code_version),
        }
        if len(state.history) < run.recipe.epochs:
            metrics["stopped_early_after_epoch"] = state.history[-1]["epoch"]
        write_run_files(run.output_dir, metrics, run.recipe, reports, run.splits)
        remove_epochs(run.output_dir)  # before the checkpoints: a kill between the two leaves a resumable run
        remove_checkpoints(run.output_dir)  # the run is complete: its model directory is the result
        metrics["output_dir"] = str(run.output_dir)
    accelerator.wait_for_everyone()
    return metrics


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _first_line(run: Run) -> str:
    per_step, world = run.sentences_per_step, run.world
    split = (
        f" = {per_step // world}{'-' + str(-(-per_step // world)) if per_step % world else ''} on each of {world} processes"
        if world > 1
        else ""
    )
    precision = run.precision if run.precision != "no" else "fp32"
    return (
        f"training {run.recipe.model} on {len(run.splits.train.sentences):,} sentences, {per_step} sentences per optimizer step"
        f"{split}, {_count(run.recipe.epochs, 'epoch')} ({_count(run.total_steps, 'step')}),"
        f" {precision} on {run.device}{run.steps.describe()}"
    )


def _checkpoint(run: Run, epoch_loss: torch.Tensor, running: torch.Tensor) -> Path:
    """Save where the run is (all processes join: sums and RNG states are gathered); never diverged weights."""
    run.divergence.check(run.state.global_step, run.accelerator, checkpoint=run.checkpoints.last)
    run.state.epoch_loss = run.accelerator.reduce(epoch_loss, "sum").item()
    run.state.running = run.accelerator.reduce(running, "sum").item()
    return run.checkpoints.save(run.state)


def _stop_agreed(run: Run, stop: StopRequests) -> bool:
    """A signal may reach only some processes: they stop together or not at all (a collective call)."""
    if run.world == 1:
        return stop.requested
    return run.accelerator.reduce(torch.tensor(float(stop.requested), device=run.device), "sum").item() > 0
