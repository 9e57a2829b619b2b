"""Fine-tune an encoder for NER: the whole loop, top to bottom.

    data -> windows -> length-grouped steps of 16 sentences -> weighted loss
    -> clip -> AdamW -> linear decay -> evaluate each epoch -> keep the best

Accelerate handles the device, mixed precision and data parallelism; the
accumulation is ours (see train/loss.py), so the gradient of each step is the
seed recipe's whatever the physical batching.
"""

from __future__ import annotations

import math
import os
import random
import time
from datetime import datetime
from pathlib import Path

import torch

from nertune.data.features import length_grouped_steps
from nertune.data.splits import load_splits
from nertune.evaluate.predict import build_windows, max_pieces_for
from nertune.evaluate.run import evaluate_sentences
from nertune.model.load import load_for_training, load_tokenizer, save_model
from nertune.train.loss import window_weights
from nertune.train.precision import choose_precision
from nertune.train.recipe import Recipe
from nertune.train.step import forward_backward
from nertune.train.report import RunLog, console, run_info, write_run_files


def train_run(recipe: Recipe, progress: bool = True) -> dict:
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    # ---- data first: a bad file fails before anything heavy loads ----
    splits = load_splits(recipe.data, recipe.train, recipe.validation, recipe.test, recipe.max_train_sentences, recipe.max_eval_sentences)
    if splits.train is None:
        from nertune.errors import NertuneError

        raise NertuneError("no training data", fix="use --data conll2003 or --train FILE")
    labels = splits.labels
    label2id = {label: i for i, label in enumerate(labels)}
    train_sentences = splits.train.sentences

    on_gpu = torch.cuda.is_available()
    precision, precision_notice = choose_precision(recipe.mixed_precision, on_gpu)
    # Under torchrun on a CPU machine Accelerate only distributes when told to use the CPU.
    accelerator = Accelerator(mixed_precision=precision, cpu=not on_gpu)
    main = accelerator.is_main_process
    world = accelerator.num_processes
    say = console.print if main else (lambda *a, **k: None)
    if precision_notice:
        say(f"[yellow]notice:[/] {precision_notice}")
    for notice in splits.notices():
        say(f"[yellow]notice:[/] {notice}")
    set_seed(recipe.seed)

    # ---- model -----------------------------------------------------------
    tokenizer = load_tokenizer(recipe.model)
    model = load_for_training(recipe.model, labels)
    max_pieces = max_pieces_for(model, tokenizer)
    windows = build_windows(tokenizer, [s.words for s in train_sentences], max_pieces, [[label2id[t] for t in s.tags] for s in train_sentences])
    windows_of: list[list[int]] = [[] for _ in train_sentences]
    for index, window in enumerate(windows):
        windows_of[window.sequence].append(index)
    too_long = sum(len(w) > 1 for w in windows_of)
    if too_long:
        say(f"[yellow]notice:[/] {too_long} training sentences exceed {max_pieces} wordpieces; they are split into overlapping windows, not truncated")
    words_in_sentence = [len(s.words) for s in train_sentences]
    piece_lengths = [sum(len(windows[i].input_ids) for i in w) for w in windows_of]

    # ---- optimisation: AdamW with no weight decay is the Trainer's Adam ----
    per_step = recipe.sentences_per_step
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=recipe.learning_rate, betas=(recipe.adam_beta1, recipe.adam_beta2),
        eps=recipe.adam_epsilon, weight_decay=recipe.weight_decay, foreach=True,
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
    device = accelerator.device
    autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)

    output_dir = Path(recipe.output_dir or f"runs/{datetime.now().strftime('%Y%m%d-%H%M%S')}")
    log = RunLog(output_dir, enabled=main)
    rng = random.Random(recipe.seed)
    history: list[dict] = []
    best_f1, best_epoch = -1.0, 0
    train_seconds = 0.0
    global_step = 0
    say(f"training {recipe.model} on {len(train_sentences):,} sentences, {per_step} per step x {world} process(es), "
        f"{recipe.epochs} epochs ({total_steps:,} steps), {precision if precision != 'no' else 'fp32'} on {device}")

    for epoch in range(1, recipe.epochs + 1):
        model.train()
        steps = length_grouped_steps(piece_lengths, per_step, rng, recipe.group_by_length)
        running = torch.zeros((), device=device)
        since_log = 0
        epoch_loss = torch.zeros((), device=device)
        seen = 0
        bar = log.progress(f"epoch {epoch}/{recipe.epochs}", len(steps)) if progress else None
        started = time.perf_counter()
        for step_sentences in steps:
            # This process's share of the step's sentences; every process knows the whole step.
            mine = step_sentences[accelerator.process_index :: world]
            step_windows = [windows[i] for s in mine for i in windows_of[s]]
            step_words = sum(words_in_sentence[s] for s in step_sentences)
            weights = window_weights(step_windows, words_in_sentence, recipe.accumulation, per_step, step_words, world)
            step_loss = forward_backward(
                model, step_windows, weights, tokenizer.pad_token_id, device, recipe.max_tokens_per_forward,
                backward=accelerator.backward, no_sync=(lambda: accelerator.no_sync(model)) if world > 1 else None,
                autocast=accelerator.autocast,
            )
            if not step_windows:  # a process with no sentences this step still joins the all-reduce
                accelerator.backward(sum(p.sum() * 0 for p in model.parameters()))
            grad_norm = accelerator.clip_grad_norm_(model.parameters(), recipe.max_grad_norm) if recipe.max_grad_norm else None
            optimizer.step()
            if not accelerator.optimizer_step_was_skipped:
                scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            global_step += 1
            seen += len(step_sentences)
            running += step_loss / world
            since_log += 1
            epoch_loss += step_loss / world
            if global_step % 10 == 0 or global_step == total_steps:
                # One host sync every 10 steps, not every step.
                loss_value = accelerator.reduce(running, "sum").item() / since_log
                running.zero_()
                since_log = 0
                elapsed = time.perf_counter() - started
                log.step(global_step, epoch, loss_value, scheduler.get_last_lr()[0],
                         None if grad_norm is None else float(grad_norm), seen / max(elapsed, 1e-9))
                if bar:
                    bar.update(loss=loss_value, rate=seen / max(elapsed, 1e-9))
            if bar:
                bar.advance()
        epoch_seconds = time.perf_counter() - started
        train_seconds += epoch_seconds
        if bar:
            bar.close()
        train_loss = accelerator.reduce(epoch_loss, "sum").item() / len(steps)

        # ---- evaluate (main process, whole validation split) ---------------
        record = {"epoch": epoch, "train_loss": train_loss, "train_seconds": epoch_seconds,
                  "sentences_per_second": len(train_sentences) / epoch_seconds}
        if main and splits.validation is not None:
            result = evaluate_sentences(accelerator.unwrap_model(model), tokenizer, splits.validation.sentences, device, autocast_dtype)
            record["validation"] = _headline(result["metrics"])
            say(f"epoch {epoch}: train loss {train_loss:.4f} | validation loss {record['validation']['loss']:.4f} "
                f"F1 {record['validation']['f1']:.4f} ({record['sentences_per_second']:.1f} sentences/s)")
        history.append(record)
        f1 = record.get("validation", {}).get("f1", 0.0)
        if main and (splits.validation is None or f1 > best_f1):
            best_f1, best_epoch = f1, epoch
            save_model(accelerator.unwrap_model(model), tokenizer, output_dir)
        accelerator.wait_for_everyone()

    # ---- final: the best epoch's weights on validation and test -------------
    metrics: dict = {}
    if main:
        final_model = accelerator.unwrap_model(model)
        if best_epoch != recipe.epochs:
            from safetensors.torch import load_file

            final_model.load_state_dict(load_file(output_dir / "model.safetensors", device=str(device)), strict=False)
        reports = {}
        for name in ("validation", "test"):
            split = getattr(splits, name)
            if split is not None:
                reports[name] = evaluate_sentences(final_model, tokenizer, split.sentences, device, autocast_dtype)
        metrics = {
            "epochs": history,
            "best_epoch": best_epoch,
            **{name: r["metrics"] for name, r in reports.items()},
            "recipe": recipe.model_dump(),
            "model": recipe.model,
            "labels": labels,
            "train_sentences": len(train_sentences),
            "train_seconds": train_seconds,
            "precision": precision,
            **run_info(world, splits.md5),
        }
        write_run_files(output_dir, metrics, recipe, reports, splits)
        metrics["output_dir"] = str(output_dir)
    accelerator.wait_for_everyone()
    return metrics


def _headline(metrics: dict) -> dict:
    return {k: metrics[k] for k in ("loss", "precision", "recall", "f1", "accuracy")}
