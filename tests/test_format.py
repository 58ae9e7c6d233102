"""cnnzoo._format: the one did-you-mean helper behind every unknown-name error."""

from __future__ import annotations

import pytest
import torch

import cnnzoo
from cnnzoo._format import closest_names, did_you_mean


def test_names_that_extend_the_input_come_first_then_similar_ones() -> None:
    known = ["lenet5", "lenet5_modern", "lenet_book", "resnet50", "alexnet"]
    assert closest_names("lenet", known) == ["lenet5", "lenet5_modern", "lenet_book"]
    assert closest_names("resnt50", known)[0] == "resnet50"  # the most similar first
    assert did_you_mean("alexnt", known).startswith("; did you mean alexnet")
    assert did_you_mean("transformer", known) == ""


def test_every_unknown_name_error_uses_it() -> None:
    # The registry, truncate/freeze (module names) and traced node names: one format.
    with pytest.raises(ValueError, match=r"unknown model 'resnet5'; did you mean resnet50"):
        cnnzoo.create_model("resnet5")
    model = cnnzoo.create_model("lenet5_modern")
    with pytest.raises(ValueError, match=r"no module named 'c55'.*; did you mean c5\b"):
        cnnzoo.freeze(model, upto="c55")
    with pytest.raises(ValueError, match=r"no layer or operation named 'f66'.*did you mean f6"):
        cnnzoo.truncate(model, upto="f66")
    assert isinstance(model(torch.zeros(1, 1, 32, 32)), torch.Tensor)
