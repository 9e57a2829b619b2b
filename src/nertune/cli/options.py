"""Command-line options made from the recipe schema (training/recipe.py): each field's flag, help and range
are written once, there, and every command that takes a field gets it from here."""

from __future__ import annotations

import inspect
from types import UnionType
from typing import Callable, Literal, Optional, Union, get_args, get_origin

import typer

from nertune.training.recipe import Recipe


def recipe_options(names: list[str] | None = None) -> list[inspect.Parameter]:
    """One option per recipe field, its help and range from the schema (training/recipe.py); default None:
    a flag overrides the recipe file's value only when given."""
    params = []
    for name, info in Recipe.model_fields.items():
        if names is not None and name not in names:
            continue
        kind = _option_type(info.annotation)
        flag = "--" + name.replace("_", "-")
        off = (info.json_schema_extra or {}).get("off")
        decls = [f"{flag}/{off}"] if off else [flag]
        default = info.default
        shown = "none" if default is None else str(default).lower() if isinstance(default, bool) else default
        choices = get_args(_bare(info.annotation)) if get_origin(_bare(info.annotation)) is Literal else ()
        help = info.description + (f" One of: {', '.join(choices)}." if choices else "") + f" (recipe default: {shown})"
        option = typer.Option(None, *decls, help=help, show_default=False)
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=Optional[kind]))
    return params


def _bare(annotation):
    args = [a for a in get_args(annotation) if a is not type(None)]
    return args[0] if get_origin(annotation) in (Union, UnionType) and len(args) == 1 else annotation


def _option_type(annotation) -> type:
    bare = _bare(annotation)
    return str if get_origin(bare) is Literal else bare


def with_parameters(func: Callable, parameters: list[inspect.Parameter]) -> Callable:
    """`func(**options)` with the signature Typer reads its options from."""
    func.__signature__ = inspect.Signature(parameters)
    func.__annotations__ = {p.name: p.annotation for p in parameters}
    return func


def precision_option():
    """--precision of the commands that tag (predict, serve, evaluate, compare)."""
    return typer.Option(
        "auto",
        help=(
            "auto | fp32 | bf16: the weights' dtype for tagging. auto: bf16 on a CPU with AVX-512 BF16 or AMX "
            "(NERTUNE_CPU_BF16 overrides), else fp32. An ONNX export runs as exported."
        ),
    )
