"""NerPipeline: `transformers.pipeline("token-classification")` that tags exactly as nertune's Tagger.

    from transformers import pipeline
    from nertune.tag.pipeline import NerPipeline
    ner = pipeline("token-classification", model=RUN_DIR, pipeline_class=NerPipeline)   # or ner_pipeline(RUN_DIR)
    ner("George Washington went to Washington.")

Contract: each text's entities are `Tagger(model, tokenizer)(text)`'s (tag/tagger.py): the same spans,
types, character offsets and scores, for softmax, casing, document-context and CRF models, in the
pipeline's aggregated shape {"entity_group", "score", "word", "start", "end"}, `word` = text[start:end].

Accepts a run directory (the CRF is read from its crf.safetensors when pipeline() loaded the model
without it) or loaded model and fast-tokenizer objects; a str, a list or a generator of str. Options:
`constrain` (as the Tagger's), `ignore_labels` (entity types to drop), `batch_size` (texts per Tagger
call); `aggregation_strategy` only None or "first". Pre-split words, `offset_mapping` and `stride` are
refused (use Tagger.tag_words; the Tagger's overlapping windows already cover any length).
"""

from __future__ import annotations

from pathlib import Path

from transformers import TokenClassificationPipeline, pipeline

from nertune.errors import NertuneError
from nertune.model.crf import has_crf, load_crf
from nertune.model.load import load_tokenizer, load_trained, verify_manifest
from nertune.tag.tagger import Tagger


class NerPipeline(TokenClassificationPipeline):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not getattr(self.tokenizer, "is_fast", False):
            raise NertuneError(
                "NerPipeline needs a fast tokenizer (word ids of each wordpiece)",
                fix="load the model folder's tokenizer.json (use_fast=True)",
            )
        if has_crf(self.model.config) and getattr(self.model, "crf", None) is None:
            _attach_crf(self.model)
        self.tagger = Tagger(self.model, self.tokenizer, device=self.device)

    def _sanitize_parameters(
        self,
        constrain=None,
        ignore_labels=None,
        aggregation_strategy=None,
        is_split_into_words=False,
        delimiter=None,
        offset_mapping=None,
        stride=None,
    ):
        if is_split_into_words or offset_mapping is not None:
            raise ValueError("NerPipeline tags raw text only: for pre-split words use nertune's Tagger.tag_words(words)")
        if stride is not None:
            raise ValueError("NerPipeline takes no stride: the Tagger covers any length with overlapping windows")
        name = getattr(aggregation_strategy, "value", aggregation_strategy)
        if name is not None and str(name).lower() != "first":
            raise ValueError(
                "NerPipeline returns the Tagger's whole-word entities (first-subword scores); "
                f"aggregation_strategy={name!r} is not available"
            )
        forward = {} if constrain is None else {"constrain": bool(constrain)}
        post = {} if ignore_labels is None else {"ignore_labels": list(ignore_labels)}
        return {}, forward, post

    def preprocess(self, text, **_):
        if not isinstance(text, str):
            raise ValueError(f"NerPipeline takes text (a str), got {type(text).__name__}")
        # One chunk per text: the Tagger does its own sentence splitting and windowing.
        yield {"text": text, "is_last": True}

    def _forward(self, model_inputs, constrain=None):
        text, is_last = model_inputs["text"], model_inputs["is_last"]
        batched = isinstance(text, list)  # batch_size > 1: the collated texts arrive as a list
        texts = text if batched else [text]
        # Entities (dicts) here, not TaggedWords: the pipeline's device transfer rebuilds tuples as plain ones.
        found = self.tagger.tag_batch(texts, constrain)
        return {"text": text, "entities": found if batched else found[0], "is_last": is_last}

    def postprocess(self, all_outputs, ignore_labels=()):
        (output,) = all_outputs
        return [
            {"entity_group": e["type"], "score": e["score"], "word": e["text"], "start": e["start"], "end": e["end"]}
            for e in output["entities"]
            if e["type"] not in ignore_labels
        ]


def _attach_crf(model) -> None:
    """pipeline() loads the encoder and classifier only; the CRF transitions sit next to them on disk."""
    name = getattr(model, "name_or_path", None) or getattr(model.config, "_name_or_path", None)
    folder = Path(str(name)) if name else None
    if folder is None or not folder.is_dir():
        raise NertuneError(
            "config.json says the model has a CRF head, but the model has none and its folder is unknown",
            fix="pass the run directory as model=, or load the model with nertune.model.load.load_trained",
        )
    verify_manifest(folder)  # the CRF must be this run's: crf.safetensors is in the manifest
    load_crf(model, folder)


def ner_pipeline(run_dir: str | Path, **kwargs) -> NerPipeline:
    """`pipeline("token-classification", pipeline_class=NerPipeline)` over a run directory, loaded as Tagger.load
    loads it (manifest checked, safetensors only, no remote code); kwargs go to pipeline() (device, batch_size...)."""
    return pipeline(
        "token-classification",
        model=load_trained(run_dir),
        tokenizer=load_tokenizer(str(run_dir)),
        pipeline_class=NerPipeline,
        trust_remote_code=False,
        **kwargs,
    )
