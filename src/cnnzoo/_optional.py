"""Optional dependencies: imported when a feature needs them, named with their extra when missing.

The base install (torch, numpy, pillow) trains, tables and draws SVG; plots, ONNX and explanations
come with extras (``pip install 'cnnzoo[plots]'``). A missing one is a one-line error that names the
feature, the package and the extra, never a bare ``ModuleNotFoundError`` from deep inside a call.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["EXTRAS", "MissingExtraError", "require"]

# The distribution each optional top-level module comes from, and the extra that installs it.
EXTRAS: dict[str, tuple[str, str]] = {
    "matplotlib": ("matplotlib", "plots"),
    "onnx": ("onnx", "deploy"),
    "onnxruntime": ("onnxruntime", "deploy"),
    "onnxscript": ("onnxscript", "deploy"),
    "captum": ("captum", "explain"),
}


class MissingExtraError(ModuleNotFoundError):
    """An optional dependency a feature needs is not installed."""


def require(module: str, feature: str) -> ModuleType:
    """Import ``module`` (e.g. ``"matplotlib.figure"``) or raise a one-line MissingExtraError."""
    top = module.partition(".")[0]
    try:
        importlib.import_module(top)  # the package itself first: a submodule may be cached
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        if error.name is None or error.name.partition(".")[0] != top:
            raise  # the package is there but broken: that is not a missing extra
        package, extra = EXTRAS.get(top, (top, ""))
        hint = f"pip install 'cnnzoo[{extra}]'" if extra else f"pip install {package}"
        raise MissingExtraError(
            f"{package} is needed for {feature} but is not installed ({hint})"
        ) from None
