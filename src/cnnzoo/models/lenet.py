"""LeNet-5 (LeCun, Bottou, Bengio, Haffner 1998, Proc. IEEE, sec. II-B) and two descendants.

- ``lenet5``: the paper's network, layer for layer: scaled-tanh squashing, trainable subsampling,
  the partial C3 connection table (Table I), and Euclidean RBF output units with fixed centres.
- ``lenet5_modern``: the usual modern reading: full C3, ReLU, plain pooling, a linear output.
- ``lenet_book``: the textbook teaching net for 28x28 MNIST (3x3 first conv with padding 1).

Module names follow the paper's layer labels (c1, s2, c3, s4, c5, f6, output) so the code can be
held against Table I / Fig. 2.
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cnnzoo.models import papers
from cnnzoo.models.base import ClassifierModel, FeatureInfo, new_linear_like
from cnnzoo.registry import Numbers, numbers, register_model

__all__ = [
    "C3_TABLE",
    "ConnectionTableConv2d",
    "EuclideanRBF",
    "LeNet5",
    "LeNet5Modern",
    "LeNetBook",
    "ScaledTanh",
    "Subsampling",
    "lenet5",
    "lenet5_modern",
    "lenet_book",
    "rbf_centres",
]

# Table I of the paper: C3 map -> the S2 maps it reads (0-based). Maps 0-5 read three contiguous
# maps, 6-11 four contiguous, 12-14 four non-contiguous, 15 all six: 60 connections in all. The
# paper's reasons (sec. II-B): fewer connections, and broken symmetry so that the maps are forced
# to learn different features.
C3_TABLE: tuple[tuple[int, ...], ...] = (
    (0, 1, 2),
    (1, 2, 3),
    (2, 3, 4),
    (3, 4, 5),
    (4, 5, 0),
    (5, 0, 1),
    (0, 1, 2, 3),
    (1, 2, 3, 4),
    (2, 3, 4, 5),
    (3, 4, 5, 0),
    (4, 5, 0, 1),
    (5, 0, 1, 2),
    (0, 1, 3, 4),
    (1, 2, 4, 5),
    (0, 2, 3, 5),
    (0, 1, 2, 3, 4, 5),
)

# Appendix A: weights uniform in +-2.4 / F_i, F_i the fan-in of the unit the connection belongs to,
# so that every weighted sum starts in the squash's operating region.
LECUN_INIT_SCALE = 2.4


def _lecun_uniform_(tensor: Tensor, fan_in: int) -> None:
    bound = LECUN_INIT_SCALE / fan_in
    with torch.no_grad():
        tensor.uniform_(-bound, bound)


class ScaledTanh(nn.Module):
    """The paper's squash f(a) = A tanh(S a), A = 1.7159, S = 2/3 (sec. II-B, Appendix A).

    Chosen so that f(1) = 1 and f(-1) = -1: the +-1 targets sit where the second derivative peaks,
    away from saturation, and the gain near 0 is close to 1.
    """

    amplitude = 1.7159
    slope = 2.0 / 3.0

    def forward(self, x: Tensor) -> Tensor:
        # A tanh(S x) through tanh(z) = 2 sigmoid(2z) - 1: torch's CPU tanh took 2.4-4x the time
        # of this form (forward and backward, fp32, LeNet-5's C1 maps at batch 32; issue 15,
        # AVX-512 CPU), and the squash runs on every unit. The forms differ by < 1e-6 in float32.
        two_a = 2.0 * self.amplitude
        return torch.sigmoid(x * (2.0 * self.slope)).mul(two_a).sub_(self.amplitude)


class Subsampling(nn.Module):
    """Trainable subsampling (S2, S4): per map, the sum of each 2x2 block times a trainable
    coefficient plus a trainable bias (sec. II-B). Two parameters per map; squash separately."""

    def __init__(self, channels: int, kernel_size: int = 2) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.weight = nn.Parameter(torch.empty(channels))
        self.bias = nn.Parameter(torch.empty(channels))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        fan_in = self.kernel_size * self.kernel_size  # four inputs per unit (Appendix A rule)
        _lecun_uniform_(self.weight, fan_in)
        _lecun_uniform_(self.bias, fan_in)

    def forward(self, x: Tensor) -> Tensor:
        # divisor_override=1 turns average pooling into the plain sum of the receptive field.
        summed = F.avg_pool2d(x, self.kernel_size, divisor_override=1)
        return summed * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)

    def extra_repr(self) -> str:
        return f"{self.weight.numel()}, kernel_size={self.kernel_size}"


class ConnectionTableConv2d(nn.Module):
    """A convolution in which output map j reads only the input maps ``table[j]`` (LeNet-5's C3).

    Only the kernels that exist are parameters: ``weight`` holds one k x k kernel per connection,
    in table order (map 0's inputs, then map 1's, ...). The forward scatters them into a dense
    (out, in, k, k) kernel whose other entries are constant zeros and runs one ``conv2d``, so
    absent connections have no parameters, receive no gradient and can never become non-zero.
    """

    dense_index: Tensor

    def __init__(self, in_channels: int, table: Sequence[Sequence[int]], kernel_size: int) -> None:
        super().__init__()
        for j, inputs in enumerate(table):
            if not inputs or len(set(inputs)) != len(inputs):
                raise ValueError(f"output map {j} must read distinct input maps, got {inputs}")
            if not all(0 <= i < in_channels for i in inputs):
                raise ValueError(f"output map {j} reads {inputs}, outside 0..{in_channels - 1}")
        self.in_channels = in_channels
        self.out_channels = len(table)
        self.kernel_size = kernel_size
        self.table = tuple(tuple(inputs) for inputs in table)
        pairs = [(j, i) for j, inputs in enumerate(self.table) for i in inputs]
        self.weight = nn.Parameter(torch.empty(len(pairs), kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.empty(self.out_channels))
        # Position of each connection's kernel in the flattened (out * in) kernel stack. Derived
        # from the table, so not saved in the state_dict.
        index = torch.tensor([j * in_channels + i for j, i in pairs], dtype=torch.long)
        self.register_buffer("dense_index", index, persistent=False)
        self.reset_parameters()

    @property
    def num_connections(self) -> int:
        return self.weight.shape[0]

    def reset_parameters(self) -> None:
        # Appendix A: the fan-in differs per output map (3, 4 or 6 input maps x k x k).
        k2 = self.kernel_size * self.kernel_size
        fan_ins = [k2 * len(inputs) for inputs in self.table for _ in inputs]
        bounds = torch.tensor([LECUN_INIT_SCALE / f for f in fan_ins], device=self.weight.device)
        bias_bounds = torch.tensor(
            [LECUN_INIT_SCALE / (k2 * len(inputs)) for inputs in self.table],
            device=self.bias.device,
        )
        with torch.no_grad():
            self.weight.uniform_(-1.0, 1.0).mul_(bounds.view(-1, 1, 1))
            self.bias.uniform_(-1.0, 1.0).mul_(bias_bounds)

    def dense_weight(self) -> Tensor:
        """The (out, in, k, k) kernel with zeros for the connections the table leaves out."""
        k = self.kernel_size
        flat = self.weight.new_zeros(self.out_channels * self.in_channels, k, k)
        flat = flat.index_copy(0, self.dense_index, self.weight)
        return flat.view(self.out_channels, self.in_channels, k, k)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.dense_weight(), self.bias)

    def table_macs(self, input: Tensor, output: Tensor) -> int:
        """MACs for the layer table (``cnnzoo.inspect.macs.CountsOwnMacs``): only the 60
        kernels of the table exist (LeCun et al. 1998, Table I); the dense conv that runs them
        multiplies 36 more by constant zeros."""
        return int(output.shape[0]) * math.prod(output.shape[2:]) * self.weight.numel()

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"connections={self.num_connections}"
        )


def _paley_hadamard(q: int) -> list[list[int]]:
    """The Hadamard matrix of order q + 1 by Paley's first construction (q prime, q = 3 mod 4):
    H = I + [[0, 1^T], [-1, Q]], Q the Jacobsthal matrix Q[i][j] = legendre(j - i, q)."""
    if q % 4 != 3 or any(q % d == 0 for d in range(2, math.isqrt(q) + 1)):
        raise ValueError(f"Paley's construction needs a prime q = 3 mod 4, got {q}")
    residues = {(x * x) % q for x in range(1, q)}

    def legendre(a: int) -> int:
        a %= q
        return 0 if a == 0 else (1 if a in residues else -1)

    n = q + 1
    h = [[1] * n]  # first row: 1 on the diagonal, then +1s
    for i in range(q):
        row = [-1] + [legendre(j - i) for j in range(q)]
        row[i + 1] = 1  # the identity on the diagonal (Q's diagonal is 0)
        h.append(row)
    return h


def rbf_centres(num_classes: int, dim: int = 84) -> list[list[int]]:
    """Fixed +-1 centres for the RBF output units, one per class, well separated.

    The paper's centres are 7x12 bitmaps of the characters (sec. II-B), drawn so that confusable
    characters (O, 0, o) lie close together. We have no bitmaps, and for digits there is no reason
    to make any two classes close, so we take rows of a Hadamard matrix of order 84 (Paley, q = 83):
    they are pairwise orthogonal, so any two centres differ in exactly 42 of 84 places (squared
    distance 168). For 10 codes of length 84 the Plotkin bound allows at most 46, so this is
    near-optimal, and deterministic. Rows 1..83 come first (each has 42 +1s and 42 -1s), then the
    all-ones row, then the negated rows; classes beyond 2 * 84 get seeded random +-1 codes.
    """
    codes: list[list[int]] = []
    if dim == 84:
        hadamard = _paley_hadamard(83)
        rows = hadamard[1:] + hadamard[:1]
        codes = rows + [[-v for v in row] for row in rows]
    rng = random.Random(1998)
    while len(codes) < num_classes:
        codes.append([rng.choice((-1, 1)) for _ in range(dim)])
    return codes[:num_classes]


class EuclideanRBF(nn.Module):
    """Euclidean RBF output units (sec. II-B): y_i = sum_j (x_j - w_ij)^2, fixed +-1 centres w_i.

    Returns the negative squared distances as logits: cross-entropy on them is the paper's
    discriminative (MAP) loss of sec. II-C without its constant "rubbish class" term. The centres
    are a buffer (fixed, saved with checkpoints), never trained.
    """

    centres: Tensor

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.in_features = in_features
        self.num_classes = num_classes
        centres = torch.tensor(rbf_centres(num_classes, in_features), dtype=torch.float32)
        self.register_buffer("centres", centres)

    def forward(self, x: Tensor) -> Tensor:
        return -(x.unsqueeze(1) - self.centres).pow(2).sum(dim=-1)

    def table_macs(self, input: Tensor, output: Tensor) -> int:
        """MACs for the layer table (``cnnzoo.inspect.macs.CountsOwnMacs``): one
        squared-difference accumulation per input and class (LeCun et al. 1998, eq. 7)."""
        return int(input.shape[0]) * self.in_features * self.num_classes

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, num_classes={self.num_classes}"


LENET5_INPUT_SIZE = (32, 32)  # sec. II-B: 32x32 input, C5 then 1x1
BOOK_INPUT_SIZE = (28, 28)  # MNIST as it is


class LeNet5(ClassifierModel):
    """LeNet-5 as in sec. II-B: C1-S2-C3-S4-C5-F6 with squashing after every layer, RBF output.

    Layer sizes (32x32 input): C1 6@28x28, S2 6@14x14, C3 16@10x10, S4 16@5x5, C5 120@1x1, F6 84.
    Parameters 156 + 12 + 1,516 + 32 + 48,120 + 10,164 = 60,000 (the RBF centres are fixed).
    Connections 340,908 (paper): the MACs below plus 6,508 bias connections and 7,880 in S2/S4.
    The paper normalises the input so the background is -0.1 and the foreground 1.175 (sec. II-B);
    that belongs to the data pipeline, not the model.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.min_input_size = LENET5_INPUT_SIZE
        self.fixed_input_size = LENET5_INPUT_SIZE  # F6 needs C5 to be exactly 1x1
        self.c1 = nn.Conv2d(in_channels, 6, kernel_size=5)
        self.c1_act = ScaledTanh()
        self.s2 = Subsampling(6)
        self.s2_act = ScaledTanh()
        self.c3 = ConnectionTableConv2d(6, C3_TABLE, kernel_size=5)
        self.c3_act = ScaledTanh()
        self.s4 = Subsampling(16)
        self.s4_act = ScaledTanh()
        # Called convolutional, not full, because a larger input would make it more than 1x1.
        self.c5 = nn.Conv2d(16, 120, kernel_size=5)
        self.c5_act = ScaledTanh()
        self.f6 = nn.Linear(120, 84)
        self.f6_act = ScaledTanh()
        self.output = EuclideanRBF(84, num_classes)
        self.feature_info = [
            FeatureInfo("s2_act", 6, 2),
            FeatureInfo("s4_act", 16, 4),
            FeatureInfo("c5_act", 120, 4),  # 1x1 at 32x32; its units still step 4 input pixels
        ]
        for layer in (self.c1, self.c5, self.f6):
            fan_in = layer.weight[0].numel()
            _lecun_uniform_(layer.weight, fan_in)
            if layer.bias is not None:  # the paper counts the bias as a connection too
                _lecun_uniform_(layer.bias, fan_in)

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.s2_act(self.s2(self.c1_act(self.c1(x))))
        x = self.s4_act(self.s4(self.c3_act(self.c3(x))))
        x = self.c5_act(self.c5(x))
        return x

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = self.f6_act(self.f6(torch.flatten(x, 1)))
        return x if pre_logits else self.output(x)

    def get_classifier(self) -> nn.Module:
        return self.output

    def reset_classifier(self, num_classes: int) -> None:
        old = self.output.centres
        self.output = EuclideanRBF(84, num_classes).to(device=old.device, dtype=old.dtype)
        self.num_classes = num_classes


_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
}


def _activation(name: str | None) -> nn.Module:
    if name is None:
        return nn.Identity()
    try:
        return _ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(
            f"unknown activation {name!r}; choose None or one of {', '.join(_ACTIVATIONS)}"
        ) from None


class LeNet5Modern(ClassifierModel):
    """The common modern LeNet-5: full C3, ReLU, plain 2x2 pooling, a linear output layer.

    Same layer sizes as the paper's; C3 reads all six maps (2,416 params instead of 1,516) and
    S2/S4 have no parameters, so the total is 61,706. PyTorch's default initialisation.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, pool: str = "avg") -> None:
        super().__init__()
        pools: dict[str, type[nn.Module]] = {"avg": nn.AvgPool2d, "max": nn.MaxPool2d}
        if pool not in pools:
            raise ValueError(f"unknown pool {pool!r}; choose 'avg' or 'max'")
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.min_input_size = LENET5_INPUT_SIZE
        self.fixed_input_size = LENET5_INPUT_SIZE
        self.c1 = nn.Conv2d(in_channels, 6, kernel_size=5)
        self.c1_act = nn.ReLU()
        self.s2 = pools[pool](2)
        self.c3 = nn.Conv2d(6, 16, kernel_size=5)
        self.c3_act = nn.ReLU()
        self.s4 = pools[pool](2)
        self.c5 = nn.Conv2d(16, 120, kernel_size=5)  # as a conv, it fails loudly on a wrong size
        self.c5_act = nn.ReLU()
        self.f6 = nn.Linear(120, 84)
        self.f6_act = nn.ReLU()
        self.output = nn.Linear(84, num_classes)
        self.feature_info = [
            FeatureInfo("s2", 6, 2),
            FeatureInfo("s4", 16, 4),
            FeatureInfo("c5_act", 120, 4),
        ]

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.s2(self.c1_act(self.c1(x)))
        x = self.s4(self.c3_act(self.c3(x)))
        x = self.c5_act(self.c5(x))
        return x

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = self.f6_act(self.f6(torch.flatten(x, 1)))
        return x if pre_logits else self.output(x)

    def get_classifier(self) -> nn.Module:
        return self.output

    def reset_classifier(self, num_classes: int) -> None:
        self.output = new_linear_like(self.output, num_classes)
        self.num_classes = num_classes


class LeNetBook(ClassifierModel):
    """The textbook LeNet for 28x28 MNIST: conv3x3(6, pad 1) - maxpool - conv5x5(16) - maxpool -
    fc 400-120-84-classes.

    The padded 3x3 first conv keeps 28x28, so the second pool ends at 16@5x5 = 400 features as in
    LeNet-5. The teaching original has no activations (``activation=None``: an identity in each
    slot, keeping module names fixed); ``"relu"``, ``"tanh"`` or ``"sigmoid"`` add them after
    every conv and hidden fc layer.
    """

    def __init__(
        self, num_classes: int = 10, in_channels: int = 1, activation: str | None = None
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.activation = activation
        self.min_input_size = BOOK_INPUT_SIZE
        self.fixed_input_size = BOOK_INPUT_SIZE
        self.conv1 = nn.Conv2d(in_channels, 6, kernel_size=3, padding=1)
        self.act1 = _activation(activation)
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(6, 16, kernel_size=5)
        self.act2 = _activation(activation)
        self.pool2 = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.act3 = _activation(activation)
        self.fc2 = nn.Linear(120, 84)
        self.act4 = _activation(activation)
        self.fc3 = nn.Linear(84, num_classes)
        self.feature_info = [FeatureInfo("pool1", 6, 2), FeatureInfo("pool2", 16, 4)]

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.pool1(self.act1(self.conv1(x)))
        x = self.pool2(self.act2(self.conv2(x)))
        return x

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = self.act3(self.fc1(torch.flatten(x, 1)))
        x = self.act4(self.fc2(x))
        return x if pre_logits else self.fc3(x)

    def get_classifier(self) -> nn.Module:
        return self.fc3

    def reset_classifier(self, num_classes: int) -> None:
        self.fc3 = new_linear_like(self.fc3, num_classes)
        self.num_classes = num_classes


# Every LeNet's fully connected layers fix its input size: min_size is input_size's H x W.
_register = functools.partial(
    register_model, family="lenet", paper=papers.LECUN1998, fixed_size=True
)
# One row per variant: params and MACs with their source.
NUMBERS: dict[str, Numbers] = {
    "lenet5": numbers(
        60_000,
        326_520,
        (
            "params: paper sec. II-B (60,000 trainable). MACs computed: C1 117,600 + C3 150,000 "
            "(only the 60 table connections) + C5 48,000 + F6 10,080 + RBF 840 (84x10 squared-"
            "difference accumulations); S2/S4 (sum-pool and a per-map scale, like BN) not counted. "
            "Adding bias (6,508) and S2/S4 (7,880) connections gives the paper's 340,908."
        ),
    ),
    "lenet5_modern": numbers(
        61_706,
        416_520,
        (
            "params: published_numbers.md (computed, modern LeNet-5). MACs computed: C1 117,600 + "
            "C3 240,000 + C5 48,000 + F6 10,080 + output 840"
        ),
    ),
    "lenet_book": numbers(
        61_610,
        341_256,
        (
            "computed: params conv1 60 + conv2 2,416 + fc1 48,120 + fc2 10,164 + fc3 850; "
            "MACs conv1 42,336 + conv2 240,000 + fc 48,000 + 10,080 + 840"
        ),
    ),
}


@_register(**NUMBERS["lenet5"], input_size=(1, *LENET5_INPUT_SIZE))
def lenet5(*, num_classes: int = 10, in_channels: int = 1) -> LeNet5:
    """LeNet-5 as published: scaled tanh, trainable subsampling, partial C3, RBF output.

    LeCun, Bottou, Bengio, Haffner (1998), Gradient-Based Learning Applied to Document
    Recognition, Proc. IEEE, sec. II-B, Table I, Appendix A (initialisation). Returns logits
    -||f6 - c_i||^2 for the fixed +-1 centres c_i (see ``rbf_centres``).
    """
    return LeNet5(num_classes=num_classes, in_channels=in_channels)


@_register(**NUMBERS["lenet5_modern"], input_size=(1, *LENET5_INPUT_SIZE))
def lenet5_modern(
    *, num_classes: int = 10, in_channels: int = 1, pool: str = "avg"
) -> LeNet5Modern:
    """LeNet-5, modern reading: full C3, ReLU, avg (or max) pooling, linear output.

    After LeCun et al. (1998), sec. II-B, with the paper's specifics replaced by today's defaults.
    ``pool`` is ``"avg"`` (default) or ``"max"``.
    """
    return LeNet5Modern(num_classes=num_classes, in_channels=in_channels, pool=pool)


@_register(**NUMBERS["lenet_book"], input_size=(1, *BOOK_INPUT_SIZE))
def lenet_book(
    *, num_classes: int = 10, in_channels: int = 1, activation: str | None = None
) -> LeNetBook:
    """Textbook LeNet for 28x28 MNIST, no activations unless asked.

    The teaching version of LeCun et al. (1998): conv3x3(6, pad 1), maxpool 2, conv5x5(16),
    maxpool 2, fc 400-120-84-classes. ``activation``: None (default, as taught), ``"relu"``,
    ``"tanh"`` or ``"sigmoid"``.
    """
    return LeNetBook(num_classes=num_classes, in_channels=in_channels, activation=activation)
