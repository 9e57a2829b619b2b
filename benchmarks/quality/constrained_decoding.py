"""What constrained (valid-IOB2) decoding does to F1, and whether the Tagger is the model.

For a trained model directory, on CoNLL-2003 validation and test:

1. decoding: entity P/R/F1 (conlleval, and IOB2 strict) of the per-word argmax
   and of Viterbi-constrained decoding, from the same word logits; how many
   sentences had an invalid raw sequence and how many words changed.
2. agreement (test): the Tagger's word tags against the model's first-subword
   argmax computed with plain transformers (no nertune code: tokenizer with
   is_split_into_words, one forward pass per sentence batch). Unconstrained
   they must agree; constrained they may differ only in sentences whose raw
   sequence was invalid IOB2.
3. raw text: each document rebuilt as detokenized text (see tokenizer_agreement.py, next to this script),
   tagged by `tagger(text)` (sentence splitter + Treebank words), entities mapped
   back to the gold words by character offsets and scored — what a user gets
   from raw text, against the gold-word F1 of 1.
4. context: each document's words as one sequence (windows of up to 510
   wordpieces spanning sentences) instead of one sentence at a time, as the
   seed recipe trains — does more context help a sentence-trained model?

    .venv/bin/python -m benchmarks.quality.constrained_decoding MODEL_DIR [--out benchmarks/quality/results/constrained_decoding.json]
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections import Counter

import torch
from transformers import AutoModelForTokenClassification, AutoTokenizer

from benchmarks.common import results_dir, write_result
from benchmarks.quality.tokenizer_agreement import detokenize
from nertune.data.conll import read_conll
from nertune.data.embedded import conll2003_files
from nertune.data.schemes import is_valid_iob2
from nertune.evaluate.scoring import score, scores_from_counts, sentence_chunks
from nertune.model.decode import decode
from nertune.tag.tagger import Tagger


def summary(metrics: dict) -> dict:
    return {k: round(metrics[k], 6) for k in ("precision", "recall", "f1", "accuracy")}


def decoding(tagger: Tagger, sentences) -> tuple[dict, list, list]:
    logits = tagger.word_logits([s.words for s in sentences])
    raw = decode(logits, tagger.id2label, constrain=False)
    constrained = decode(logits, tagger.id2label, constrain=True)
    gold = [s.tags for s in sentences]
    invalid = [i for i, tags in enumerate(raw) if not is_valid_iob2(tags)]
    result = {
        "sentences": len(sentences),
        "words": sum(len(s.words) for s in sentences),
        "raw_invalid_sentences": len(invalid),
        "words_changed": sum(a != b for r, c in zip(raw, constrained) for a, b in zip(r, c)),
        "argmax": {"conlleval": summary(score(gold, raw)), "strict": summary(score(gold, raw, strict=True))},
        "constrained": {"conlleval": summary(score(gold, constrained)), "strict": summary(score(gold, constrained, strict=True))},
    }
    result["f1_change"] = {
        mode: round(result["constrained"][mode]["f1"] - result["argmax"][mode]["f1"], 6) for mode in ("conlleval", "strict")
    }
    # The same comparison restricted to the sentences the constraint changed.
    if invalid:
        g = [gold[i] for i in invalid]
        result["changed_sentences_only"] = {
            "argmax_f1": round(score(g, [raw[i] for i in invalid])["f1"], 6),
            "constrained_f1": round(score(g, [constrained[i] for i in invalid])["f1"], 6),
        }
    return result, raw, constrained


@torch.no_grad()
def plain_transformers_argmax(model_dir: str, sentences, batch: int = 32) -> list[list[str]]:
    model = AutoModelForTokenClassification.from_pretrained(model_dir, use_safetensors=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    out = []
    for start in range(0, len(sentences), batch):
        words = [s.words for s in sentences[start : start + batch]]
        encoding = tokenizer(words, is_split_into_words=True, padding=True, truncation=True, return_tensors="pt")
        predictions = model(**encoding).logits.argmax(-1)
        for row in range(len(words)):
            tags = [None] * len(words[row])
            for position, word in enumerate(encoding.word_ids(row)):
                if word is not None and tags[word] is None:
                    tags[word] = model.config.id2label[int(predictions[row, position])]
            out.append(tags)
    return out


def agreement(tagger: Tagger, model_dir: str, sentences, raw, constrained) -> dict:
    reference = plain_transformers_argmax(model_dir, sentences)
    words = disagree = truncated = 0
    constrained_outside_invalid = 0
    for ref, tags, fixed in zip(reference, raw, constrained):
        if None in ref:  # longer than the model's 512 positions: transformers truncated it
            truncated += 1
            continue
        words += len(tags)
        disagree += sum(a != b for a, b in zip(ref, tags))
        if is_valid_iob2(ref) and fixed != ref:
            constrained_outside_invalid += 1
    return {
        "reference": "transformers AutoModelForTokenClassification, first-subword argmax, padded batches of 32",
        "words_compared": words,
        "argmax_words_disagreeing": disagree,
        "sentences_skipped_truncated_by_transformers": truncated,
        "constrained_sentences_changed_although_raw_valid": constrained_outside_invalid,
    }


def raw_text(tagger: Tagger, sentences) -> dict:
    """Tag each document as raw text; score entities mapped back onto the gold words."""
    documents: dict[int, list] = {}
    for sentence in sentences:
        documents.setdefault(sentence.document, []).append(sentence)
    texts, gold_spans, gold_tags = [], [], []
    for document in documents.values():
        text, spans, tags = "", [], []
        for sentence in document:
            piece, piece_spans = detokenize(sentence.words, "detokenized")
            if text:
                text += "\n" if _headline(sentence, document) else " "
            spans.extend((len(text) + a, len(text) + b) for a, b in piece_spans)
            tags.extend(sentence.tags)
            text += piece
        texts.append(text)
        gold_spans.append(spans)
        gold_tags.append(tags)
    found = tagger.tag_batch(texts)
    counts: Counter = Counter()
    unaligned = 0
    for spans, tags, entities in zip(gold_spans, gold_tags, found):
        start_word = {a: i for i, (a, _) in enumerate(spans)}
        end_word = {b: i for i, (_, b) in enumerate(spans)}
        predicted = set()
        for e in entities:
            if e["start"] in start_word and e["end"] in end_word:
                predicted.add((e["type"], start_word[e["start"]], end_word[e["end"]]))
            else:
                predicted.add((e["type"], -1 - unaligned, -1))  # cannot match a gold entity
                unaligned += 1
        gold = sentence_chunks(tags)  # over the whole document: chunks never cross sentences in CoNLL
        for kind, chunks in (("gold", gold), ("pred", predicted), ("tp", gold & predicted)):
            for entity_type, *_ in chunks:
                counts[(kind, entity_type)] += 1
    metrics = scores_from_counts(counts)
    return {
        "documents": len(texts),
        "text": "each document's sentences detokenized; a sentence without final punctuation (headline, dateline) "
        "ends with a line break, others are joined by a space",
        "entities_not_on_gold_word_boundaries": unaligned,
        **{k: round(metrics[k], 6) for k in ("precision", "recall", "f1")},
    }


def document_context(tagger: Tagger, sentences) -> dict:
    """Whole documents as one word sequence (overlapping windows) instead of one sentence per window."""
    documents: dict[int, list] = {}
    for sentence in sentences:
        documents.setdefault(sentence.document, []).append(sentence)
    tagged = tagger.tag_words_batch([[w for s in d for w in s.words] for d in documents.values()])
    predictions = []
    for document, tags in zip(documents.values(), tagged):
        for sentence in document:
            predictions.append(tags[: len(sentence.words)])
            tags = tags[len(sentence.words) :]
    gold = [s.tags for d in documents.values() for s in d]
    return {"documents": len(documents), "constrained_conlleval": summary(score(gold, predictions))}


def _headline(sentence, document) -> bool:
    previous = document[document.index(sentence) - 1]
    return previous.words[-1] not in (".", "!", "?", '"', "'")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir")
    parser.add_argument("--max-sentences", type=int, default=None, help="First N sentences of each split (for a quick look).")
    parser.add_argument("--out", default=str(results_dir(__file__) / "constrained_decoding.json"))
    args = parser.parse_args()

    tagger = Tagger.load(args.model_dir, device="cpu", precision="fp32")  # as the other rows (evaluate_sentences, fp32)
    files = conll2003_files()
    report: dict = {"model": args.model_dir, "device": "cpu", "machine": platform.platform()}
    started = time.perf_counter()
    for split in ("validation", "test"):
        sentences = read_conll(files[split]).sentences[: args.max_sentences]
        result, raw, constrained = decoding(tagger, sentences)
        print(
            f"{split}: F1 argmax {result['argmax']['conlleval']['f1']:.4f} -> constrained "
            f"{result['constrained']['conlleval']['f1']:.4f} ({result['raw_invalid_sentences']} invalid sentences)",
            file=sys.stderr,
        )
        if split == "test":
            result["agreement"] = agreement(tagger, args.model_dir, sentences, raw, constrained)
            print(f"agreement: {result['agreement']}", file=sys.stderr)
        result["raw_text"] = raw_text(tagger, sentences)
        result["document_as_one_sequence"] = document_context(tagger, sentences)
        print(f"document as one sequence: {result['document_as_one_sequence']}", file=sys.stderr)
        print(f"raw text: {result['raw_text']}", file=sys.stderr)
        report[split] = result
    report["seconds"] = round(time.perf_counter() - started, 1)
    write_result(args.out, report)
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
