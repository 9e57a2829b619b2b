"""A Hugging Face Trainer baseline written the way examples/pytorch/token-classification/run_ner.py does it.

First-subword labels (label_all_tokens=False), DataCollatorForTokenClassification, AutoModelForTokenClassification,
the seed recipe's hyperparameters. `model.accepts_loss_kwargs = False` whenever it accumulates: in
transformers 5.x the Trainer otherwise scales the accumulated loss by num_items_in_batch, which
BertForTokenClassification ignores, so loss and gradient come out 16x too large.
Imported by the speed benchmarks; it is not part of nertune.
"""

from __future__ import annotations

import time

import torch
import transformers
from transformers import (
    AutoModelForTokenClassification,
    AutoTokenizer,
    DataCollatorForTokenClassification,
    TrainerCallback,
    TrainingArguments,
)


def tokenize_and_align(tokenizer, sentences, label2id, max_length=512):
    encodings = tokenizer([s.words for s in sentences], is_split_into_words=True, truncation=True, max_length=max_length)
    features = []
    for i, sentence in enumerate(sentences):
        word_ids = encodings.word_ids(i)
        labels, previous = [], None
        for word in word_ids:
            if word is None or word == previous:
                labels.append(-100)
            else:
                labels.append(label2id[sentence.tags[word]])
            previous = word
        features.append({"input_ids": encodings["input_ids"][i], "attention_mask": encodings["attention_mask"][i], "labels": labels})
    return features


class _Timer:
    """Seconds inside trainer.train()'s loop (from on_train_begin to on_train_end)."""

    def __init__(self):
        timer = self

        class Callback(TrainerCallback):
            def on_train_begin(self, args, state, control, **kwargs):
                timer.start = time.perf_counter()

            def on_train_end(self, args, state, control, **kwargs):
                timer.seconds = time.perf_counter() - timer.start

        self.callback = Callback()
        self.seconds = 0.0


def train_trainer(
    model_path,
    train_sentences,
    labels,
    output_dir,
    batch_size=16,
    grad_accum=1,
    epochs=1,
    learning_rate=2e-5,
    seed=42,
    use_cpu=None,
    bf16=False,
    max_steps=-1,
):
    from transformers import Trainer  # noqa: PLC0415  (Trainer: a 2 s import)

    transformers.logging.set_verbosity_error()
    label2id = {label: i for i, label in enumerate(labels)}
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    torch.manual_seed(seed)
    model = AutoModelForTokenClassification.from_pretrained(
        model_path, num_labels=len(labels), id2label=dict(enumerate(labels)), label2id=label2id, use_safetensors=True
    )
    if grad_accum > 1:
        model.accepts_loss_kwargs = False
    features = tokenize_and_align(tokenizer, train_sentences, label2id)
    args = TrainingArguments(
        output_dir=output_dir,
        per_device_train_batch_size=batch_size,
        gradient_accumulation_steps=grad_accum,
        learning_rate=learning_rate,
        num_train_epochs=epochs,
        adam_beta1=0.9,
        adam_beta2=0.999,
        adam_epsilon=1e-8,
        weight_decay=0.0,
        lr_scheduler_type="linear",
        warmup_steps=0,
        seed=seed,
        save_strategy="no",
        eval_strategy="no",
        report_to="none",
        logging_strategy="no",
        disable_tqdm=True,
        bf16=bf16,
        max_steps=max_steps,
        **({"use_cpu": use_cpu} if use_cpu is not None else {}),
    )
    timer = _Timer()
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=features,
        data_collator=DataCollatorForTokenClassification(tokenizer),
        callbacks=[timer.callback],
    )
    trainer.train()
    return trainer.model, tokenizer, timer.seconds


@torch.no_grad()
def first_subword_predictions(model, tokenizer, sentences, batch_size=32):
    """run_ner-style predictions: argmax on each word's first subword (truncated at 512, as run_ner does)."""
    model.eval()
    device = next(model.parameters()).device
    id2label = model.config.id2label
    out = []
    for start in range(0, len(sentences), batch_size):
        chunk = sentences[start : start + batch_size]
        enc = tokenizer(
            [s.words for s in chunk], is_split_into_words=True, truncation=True, max_length=512, padding=True, return_tensors="pt"
        )
        logits = model(input_ids=enc["input_ids"].to(device), attention_mask=enc["attention_mask"].to(device)).logits.argmax(-1).cpu()
        for i, sentence in enumerate(chunk):
            tags, previous = ["O"] * len(sentence.words), None
            for position, word in enumerate(enc.word_ids(i)):
                if word is not None and word != previous:
                    tags[word] = id2label[int(logits[i, position])]
                previous = word
            out.append(tags)
    return out
