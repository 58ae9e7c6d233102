"""The model registry: every builder registers itself with the facts tests, the CLI and docs read.

A builder is a function returning an ``nn.Module``; ``@register_model(...)`` records its metadata
(paper, default input, smallest valid input, published parameter count and MACs with their source,
torchvision compatibility) under the function's name. Names are API: once registered, a name keeps
its meaning.
"""

from __future__ import annotations

import fnmatch
import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict, TypeVar

from torch import nn

from cnnzoo._format import did_you_mean

__all__ = [
    "ModelInfo",
    "Numbers",
    "Paper",
    "create_model",
    "list_models",
    "model_info",
    "numbers",
    "register_model",
]


@dataclass(frozen=True)
class Paper:
    """The publication a model comes from."""

    title: str
    authors: str
    year: int
    link: str  # arXiv or DOI URL
    # How the model relates to the paper when it is not the paper's own network (e.g. a course
    # net that teaches the paper's pattern); empty for the paper's own models.
    note: str = ""

    def cite(self) -> str:
        note = f" ({self.note})" if self.note else ""
        return f"{self.authors} ({self.year}), {self.title}. {self.link}{note}"


@dataclass(frozen=True)
class ModelInfo:
    """Facts about a registered model, available without building it.

    ``params`` and ``macs`` are for the default configuration (``num_classes`` of the paper,
    ``in_channels`` of ``input_size``, aux heads as built by default) and ``macs`` at
    ``input_size`` with batch 1: multiply-accumulates of conv and linear weights, no bias adds,
    norms, activations or pooling (torchvision's "GFLOPS" convention). ``source`` says where the
    numbers come from: a paper table, torchvision's documentation, or computed and cross-checked.
    """

    name: str
    family: str
    paper: Paper
    input_size: tuple[int, int, int]  # default (C, H, W)
    min_size: tuple[int, int]  # smallest valid (H, W)
    params: int
    macs: int | None
    source: str
    torchvision: bool  # state_dict keys and shapes equal torchvision's, same function
    fixed_size: bool  # the head has fixed in-features: only input_size's H x W works
    summary: str  # first line of the builder's docstring
    builder: Callable[..., nn.Module]

    @property
    def num_classes(self) -> int:
        """Default number of classes (read from the builder's signature)."""
        import inspect

        default = inspect.signature(self.builder).parameters["num_classes"].default
        return int(default)


class Numbers(TypedDict):
    """One row of a family's table of published numbers: parameters, MACs and their source.

    A family file keeps these rows in a table beside its config tables and spreads a row into the
    registration, with the family's shared metadata bound once in a partial::

        _register = functools.partial(register_model, family="vgg", paper=..., input_size=...)
        @_register(**NUMBERS["vgg11"], torchvision=True)
        def vgg11(...): ...
    """

    params: int
    macs: int | None
    source: str


def numbers(params: int, macs: int | None, source: str) -> Numbers:
    """A row of a family's numbers table (see :class:`Numbers`), positional for short rows."""
    return Numbers(params=params, macs=macs, source=source)


_REGISTRY: dict[str, ModelInfo] = {}

BuilderT = TypeVar("BuilderT", bound=Callable[..., nn.Module])


def register_model(
    *,
    family: str,
    paper: Paper,
    input_size: tuple[int, int, int],
    min_size: tuple[int, int] | None = None,
    params: int,
    macs: int | None,
    source: str,
    torchvision: bool = False,
    fixed_size: bool = False,
    name: str | None = None,
) -> Callable[[BuilderT], BuilderT]:
    """Register a model builder under ``name`` (default: the function's name).

    ``min_size`` may be left out for a ``fixed_size`` model: it is then ``input_size``'s H x W.
    Raises ``ValueError`` if the name is taken: two builders must never share a name.
    """
    if min_size is None:
        if not fixed_size:
            raise ValueError("min_size is needed unless fixed_size=True (then it is input_size's)")
        min_size = (input_size[1], input_size[2])

    def decorator(builder: BuilderT) -> BuilderT:
        model_name = name or builder.__name__
        if model_name in _REGISTRY:
            raise ValueError(f"model {model_name!r} is already registered")
        doc = (builder.__doc__ or "").strip()

        @functools.wraps(builder)
        def build(*args: Any, **kwargs: Any) -> nn.Module:
            model = builder(*args, **kwargs)
            # Lets error messages and tables name the model as the user asked for it.
            object.__setattr__(model, "model_name", model_name)
            return model

        _REGISTRY[model_name] = ModelInfo(
            name=model_name,
            family=family,
            paper=paper,
            input_size=tuple(input_size),  # type: ignore[arg-type]
            min_size=tuple(min_size),  # type: ignore[arg-type]
            params=params,
            macs=macs,
            source=source,
            torchvision=torchvision,
            fixed_size=fixed_size,
            summary=doc.splitlines()[0] if doc else "",
            builder=build,
        )
        return build  # type: ignore[return-value]

    return decorator


def _ensure_models_loaded() -> None:
    # Importing the models package runs every family's @register_model.
    import cnnzoo.models  # noqa: F401


def _unknown_model_error(name: str) -> ValueError:
    hint = did_you_mean(name, _REGISTRY) or "; see `cnnzoo list`"
    return ValueError(f"unknown model {name!r}{hint}")


def model_info(name: str) -> ModelInfo:
    """The metadata of a registered model; ``ValueError`` naming the closest names if unknown."""
    _ensure_models_loaded()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise _unknown_model_error(name) from None


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style ``pattern`` (fnmatch), sorted."""
    _ensure_models_loaded()
    return sorted(n for n in _REGISTRY if fnmatch.fnmatchcase(n, pattern))


def create_model(
    name: str, *, weights: str | Path | None = None, progress: bool = True, **kwargs: Any
) -> nn.Module:
    """Build a registered model. Keyword arguments that are ``None`` are dropped, so that unset
    options (e.g. CLI flags) never override the model's own defaults.

    ``weights`` loads pretrained weights: ``"DEFAULT"`` or an entry name (``"IMAGENET1K_V2"``,
    see ``cnnzoo weights``), fetched into torch.hub's cache (``progress``: a bar while
    downloading), or a local file path. With another ``num_classes`` the head is new (for
    fine-tuning). See :mod:`cnnzoo.pretrained`.
    """
    if weights is not None and name not in _REGISTRY:
        _ensure_models_loaded()
        from cnnzoo.pretrained import list_weights

        if name not in _REGISTRY and list_weights(name):
            raise ValueError(
                f"torchvision publishes weights for {name!r}, but no model of that name is "
                "registered in this cnnzoo; see `cnnzoo list`"
            )
    info = model_info(name)
    given = {k: v for k, v in kwargs.items() if v is not None}
    if weights is None:
        return info.builder(**given)
    from cnnzoo.pretrained import build_pretrained

    return build_pretrained(name, info.builder, weights, given, progress=progress)
