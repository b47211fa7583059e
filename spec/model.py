"""ε-models as NumPy functions of a parameter dict (the runtime's `state_dict`, as float64 arrays).

Arrays are NCHW; every model function accepts one image (C, H, W) or a batch (N, C, H, W)
(the channel axis is −3). Every model is an `EpsModel`: `model.eps(x, t_norm)` with t_norm a
scalar (t/T, or the continuous t of the PF ODE).

Three networks, one dict of arrays driving both spec and runtime (keys = state_dict keys):

* `eps_residual_conv_net(params)` — TorchLean's `epsResidualConvNet`:
  h = relu(stem(append_time_channel(x, t)));  for i < residual_blocks:
  h = relu(h + blocks.{i}.conv2(relu(blocks.{i}.conv1(h))));  ε̂ = out(h).
* `eps_conv_net(params)` — TorchLean's `epsConvNet`:
  ε̂ = out(relu(stem(append_time_channel(x, t)))).
* `eps_film_net(cfg, params)` — the improved net of the default run (docs/default-network.md): a sinusoidal
  time embedding through a 2-layer MLP scales and shifts (FiLM) each residual block; GroupNorm
  and SiLU; optionally a stage of blocks at half the resolution (`down_blocks`, with
  `avg_pool2` and `upsample_nearest2`; the formula is in its docstring).

The two time-channel nets return a `TimeChannelEpsModel`, whose `body(x_aug)` is the network on
the time-augmented input (C+1 channels), so `eps(x, t) = body(append_time_channel(x, t))`:
that is what the law "eps_pred_loss = mse(body(noised_sample_from_eps input), target)" uses.
`TimeChannelEpsModel` and `FunctionEpsModel` are documented here but are not part of `__all__`.

Initialization (`init_params`, `init_film_params`): NumPy `default_rng(seed)`; conv and linear
weights and biases uniform(−1/√fan_in, 1/√fan_in) like torch's defaults (fan_in = in·3·3 for a
conv); GroupNorm weight 1 and bias 0. Arrays are drawn in the key order listed by the init
function (the torch module registration order).
"""

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from jaxtyping import Float

from spec.core import Index, Scalar, check, holds, in_range

__all__ = [
    "append_time_channel",
    "conv2d_same",
    "relu",
    "silu",
    "group_norm",
    "linear",
    "sinusoidal_embedding",
    "avg_pool2",
    "upsample_nearest2",
    "EpsConvNetConfig",
    "init_params",
    "eps_conv_net",
    "eps_residual_conv_net",
    "EpsFiLMNetConfig",
    "init_film_params",
    "eps_film_net",
    "CondFiLMNetConfig",
    "init_cond_film_params",
    "cond_film_net",
]

Params = dict[str, np.ndarray]


# ---------------------------------------------------------------------------------------------
# Layers


def append_time_channel(
    x: Float[np.ndarray, "*batch c h w"], t_norm: Scalar
) -> Float[np.ndarray, "*batch c+1 h w"]:
    """Append a constant time channel as the LAST channel (TorchLean's time conditioning).

    Formula: out[..., :C, :, :] = x;  out[..., C, :, :] = t_norm.
    Shapes: x (C,H,W) or (N,C,H,W) -> (C+1,H,W) or (N,C+1,H,W).
    """
    _check_image(x)
    time = np.full(x.shape[:-3] + (1,) + x.shape[-2:], t_norm, dtype=x.dtype)
    return np.concatenate([x, time], axis=-3)


def conv2d_same(
    x: Float[np.ndarray, "*batch i h w"],
    weight: Float[np.ndarray, "o i 3 3"],
    bias: Float[np.ndarray, " o"],
) -> Float[np.ndarray, "*batch o h w"]:
    """3×3 cross-correlation, stride 1, zero padding 1 (torch.nn.Conv2d(i, o, 3, padding=1)).

    Formula: y[o, r, c] = bias[o] + Σ_{i, a, b ∈ {0,1,2}} weight[o, i, a, b]·x_pad[i, r + a, c + b],
    x_pad = x zero-padded by 1 on each spatial side.
    Shapes: x (…, I, H, W), weight (O, I, 3, 3), bias (O,) -> (…, O, H, W).
    """
    h, w = x.shape[-2:]
    pad = [(0, 0)] * (x.ndim - 2) + [(1, 1), (1, 1)]
    x_pad = np.pad(x, pad)  # (…, I, H+2, W+2)
    y = np.zeros(x.shape[:-3] + (weight.shape[0], h, w), dtype=np.result_type(x, weight))
    for a in range(3):
        for b in range(3):
            window = x_pad[..., a : a + h, b : b + w]  # (…, I, H, W), shifted by (a, b)
            y = y + np.einsum("oi,...ihw->...ohw", weight[:, :, a, b], window)
    return y + bias[:, None, None]


def relu(x: Float[np.ndarray, "*shape"]) -> Float[np.ndarray, "*shape"]:
    """Rectified linear unit (Nair & Hinton 2010), TorchLean's activation.

    Formula: relu(x) = max(x, 0), elementwise.
    Shapes: (*shape) -> (*shape).
    """
    return np.maximum(x, 0)


def silu(x: Float[np.ndarray, "*shape"]) -> Float[np.ndarray, "*shape"]:
    """SiLU / swish (Elfwing et al. 2018; Hendrycks & Gimpel 2016).

    Formula: silu(x) = x·sigmoid(x), sigmoid(x) = 1/(1 + e^(−x)), evaluated as
    exp(−log(1 + e^(−x))) (np.logaddexp) so that no exponential overflows.
    Shapes: (*shape) -> (*shape).
    """
    return x * np.exp(-np.logaddexp(0, -x))


def group_norm(
    x: Float[np.ndarray, "*batch c h w"],
    weight: Float[np.ndarray, " c"],
    bias: Float[np.ndarray, " c"],
    groups: Index,
    eps: Scalar = 1e-5,
) -> Float[np.ndarray, "*batch c h w"]:
    """Group normalization (Wu & He 2018, Eq. 1–3; torch.nn.GroupNorm semantics).

    Formula: split the C channels into `groups` groups; per sample and group,
    y = (x − mean)/sqrt(var + eps)·weight[c] + bias[c], var the biased variance over the
    group's channels and pixels.
    Shapes: x (…, C, H, W), weight (C,), bias (C,) -> (…, C, H, W); C divisible by groups.
    """
    c, h, w = x.shape[-3:]
    groups = check(
        in_range("groups", groups, 1, c),
        holds(lambda: c % groups == 0,
              f"groups must divide the channel count {c}, got groups = {groups}"),
    )
    g = x.reshape(x.shape[:-3] + (groups, c // groups, h, w))  # (…, G, C/G, H, W)
    mean = g.mean(axis=(-3, -2, -1), keepdims=True)
    var = g.var(axis=(-3, -2, -1), keepdims=True)
    y = ((g - mean) / np.sqrt(var + eps)).reshape(x.shape)  # back to (…, C, H, W)
    return y * weight[:, None, None] + bias[:, None, None]


def linear(
    x: Float[np.ndarray, "*batch i"],
    weight: Float[np.ndarray, "o i"],
    bias: Float[np.ndarray, " o"],
) -> Float[np.ndarray, "*batch o"]:
    """Affine map with torch.nn.Linear's weight layout.

    Formula: y = x·Wᵀ + b.
    Shapes: x (…, I), weight (O, I), bias (O,) -> (…, O).
    """
    return x @ weight.T + bias


def sinusoidal_embedding(t_norm: Scalar, dim: Index) -> Float[np.ndarray, " dim"]:
    """Sinusoidal time embedding (Vaswani et al. 2017 §3.5; DDPM Appendix B).

    Formula: half = dim // 2; freqs_j = exp(−ln(10000)·j/half), j = 0..half−1;
    args = 1000·t_norm·freqs; emb = concat(sin(args), cos(args)). dim must be even (≥ 2).
    Shapes: t_norm scalar -> (dim,), float64.
    """
    dim = check(in_range("dim", dim, 2, 2**31),
                holds(lambda: dim % 2 == 0, f"dim must be even, got dim = {dim}"))
    half = dim // 2
    freqs = np.exp(-math.log(10000) * np.arange(half, dtype=np.float64) / half)
    args = 1000 * t_norm * freqs
    return np.concatenate([np.sin(args), np.cos(args)])


def avg_pool2(x: Float[np.ndarray, "*batch c h w"]) -> Float[np.ndarray, "*batch c h//2 w//2"]:
    """2×2 average pooling, stride 2 (torch.nn.functional.avg_pool2d(x, 2)): the way down of a
    U-Net (Ronneberger et al. 2015, §2), here by averaging.

    Formula: y[c, r, s] = ¼·Σ_{a, b ∈ {0,1}} x[c, 2r + a, 2s + b].
    Shapes: x (…, C, H, W), H and W even -> (…, C, H/2, W/2).
    """
    _check_image(x)
    h, w = x.shape[-2:]
    check(holds(h % 2 == 0 and w % 2 == 0,
                f"avg_pool2 needs x of shape (…, C, H, W) with H and W even, got {x.shape}"))
    windows = x.reshape(x.shape[:-2] + (h // 2, 2, w // 2, 2))  # (…, C, H/2, a, W/2, b)
    return windows.mean(axis=(-3, -1))


def upsample_nearest2(
    x: Float[np.ndarray, "*batch c h w"],
) -> Float[np.ndarray, "*batch c 2*h 2*w"]:
    """Nearest-neighbour 2× upsampling (torch.nn.functional.interpolate(x, scale_factor=2)):
    the way back up of a U-Net (Ronneberger et al. 2015, §2), here by repeating pixels.

    Formula: y[c, r, s] = x[c, ⌊r/2⌋, ⌊s/2⌋].
    Shapes: x (…, C, H, W) -> (…, C, 2H, 2W).
    """
    _check_image(x)
    return np.repeat(np.repeat(x, 2, axis=-2), 2, axis=-1)


# ---------------------------------------------------------------------------------------------
# Model wrappers


@dataclass(frozen=True)
class TimeChannelEpsModel:
    """An ε-model that sees the time as a constant last channel.

    Formula: eps(x, t_norm) = body(append_time_channel(x, t_norm)); body maps C+1 channels to C.
    Shapes: x (…, C, H, W) -> (…, C, H, W).
    """

    body: Callable[[np.ndarray], np.ndarray]

    def eps(
        self, x: Float[np.ndarray, "*batch c h w"], t_norm: Scalar
    ) -> Float[np.ndarray, "*batch c h w"]:
        """ε̂ = body(append_time_channel(x, t_norm)). Shapes: (…, C, H, W) -> (…, C, H, W)."""
        return self.body(append_time_channel(x, t_norm))


@dataclass(frozen=True)
class FunctionEpsModel:
    """An ε-model given by a function fn(x, t_norm). Shapes: x (…, C, H, W) -> (…, C, H, W)."""

    fn: Callable[[np.ndarray, Scalar], np.ndarray]

    def eps(
        self, x: Float[np.ndarray, "*batch c h w"], t_norm: Scalar
    ) -> Float[np.ndarray, "*batch c h w"]:
        """ε̂ = fn(x, t_norm). Shapes: (…, C, H, W) -> (…, C, H, W)."""
        return self.fn(x, t_norm)


# ---------------------------------------------------------------------------------------------
# TorchLean's convolutional nets


@dataclass(frozen=True)
class EpsConvNetConfig:
    """Shape of the TorchLean conv nets.

    data_channels C (image channels), hidden_channels H (width of every hidden conv),
    residual_blocks (blocks of `eps_residual_conv_net`; `eps_conv_net` has none).
    Shapes: -.
    """

    data_channels: int
    hidden_channels: int
    residual_blocks: int = 2

    def __post_init__(self) -> None:
        check(
            in_range("data_channels", self.data_channels, 1, 2**31),
            in_range("hidden_channels", self.hidden_channels, 1, 2**31),
            in_range("residual_blocks", self.residual_blocks, 0, 2**31),
        )


def conv_net_shapes(cfg: EpsConvNetConfig) -> dict[str, tuple[int, ...]]:
    """Parameter names and shapes of the residual net for cfg, in state_dict order.

    Shapes: stem (H, C+1, 3, 3), blocks.{i}.conv{1,2} (H, H, 3, 3), out (C, H, 3, 3), biases (out,).
    """
    c, h = cfg.data_channels, cfg.hidden_channels
    shapes = {"stem.weight": (h, c + 1, 3, 3), "stem.bias": (h,)}
    for i in range(cfg.residual_blocks):
        for conv in ("conv1", "conv2"):
            shapes[f"blocks.{i}.{conv}.weight"] = (h, h, 3, 3)
            shapes[f"blocks.{i}.{conv}.bias"] = (h,)
    shapes["out.weight"] = (c, h, 3, 3)
    shapes["out.bias"] = (c,)
    return shapes


def init_params(cfg: EpsConvNetConfig, seed: Index) -> Params:
    """Random parameters for `eps_residual_conv_net` (and, with its stem/out keys, `eps_conv_net`).

    Formula: every weight and bias ~ uniform(−1/√fan_in, 1/√fan_in), fan_in = in_channels·3·3,
    drawn in the order of `conv_net_shapes(cfg)` from np.random.default_rng(seed).
    Shapes: -> dict of float64 arrays (see `conv_net_shapes`).
    """
    return _uniform_init(conv_net_shapes(cfg), seed)


def eps_residual_conv_net(params: Params) -> TimeChannelEpsModel:
    """TorchLean's residual ε-net (`epsResidualConvNet`) with the given parameters.

    Formula: h = relu(stem(x_aug)); for i < B: h = relu(h + conv2_i(relu(conv1_i(h))));
    ε̂ = out(h), x_aug = append_time_channel(x, t_norm), all convs 3×3 same.
    B is the number of `blocks.{i}` in params; their shapes must match (ValueError otherwise).
    Shapes: x (…, C, H, W) -> (…, C, H, W).
    """
    cfg = _conv_config_of(params, residual=True)
    _check_params(params, conv_net_shapes(cfg), "eps_residual_conv_net")

    def body(x_aug: np.ndarray) -> np.ndarray:
        h = relu(conv2d_same(x_aug, params["stem.weight"], params["stem.bias"]))
        for i in range(cfg.residual_blocks):
            r = relu(
                conv2d_same(h, params[f"blocks.{i}.conv1.weight"], params[f"blocks.{i}.conv1.bias"])
            )
            r = conv2d_same(r, params[f"blocks.{i}.conv2.weight"], params[f"blocks.{i}.conv2.bias"])
            h = relu(h + r)
        return conv2d_same(h, params["out.weight"], params["out.bias"])

    return TimeChannelEpsModel(body)


def eps_conv_net(params: Params) -> TimeChannelEpsModel:
    """TorchLean's plain ε-net (`epsConvNet`): conv → relu → conv, time as the last channel.

    Formula: ε̂ = out(relu(stem(append_time_channel(x, t_norm)))).
    Uses `stem.*` and `out.*` only (other keys, e.g. `blocks.*`, are ignored).
    Shapes: x (…, C, H, W) -> (…, C, H, W).
    """
    cfg = _conv_config_of(params, residual=False)
    needed = conv_net_shapes(EpsConvNetConfig(cfg.data_channels, cfg.hidden_channels, 0))
    _check_params({k: v for k, v in params.items() if k in needed}, needed, "eps_conv_net")

    def body(x_aug: np.ndarray) -> np.ndarray:
        h = relu(conv2d_same(x_aug, params["stem.weight"], params["stem.bias"]))
        return conv2d_same(h, params["out.weight"], params["out.bias"])

    return TimeChannelEpsModel(body)


# ---------------------------------------------------------------------------------------------
# The FiLM residual net (the default run's model)


@dataclass(frozen=True)
class EpsFiLMNetConfig:
    """Shape of the FiLM residual net.

    data_channels C; hidden_channels H (width; divisible by groups); residual_blocks B;
    embed_dim E (time embedding width; even); groups G (GroupNorm groups); down_blocks D
    (blocks of the half-resolution stage between the first B − ⌊B/2⌋ blocks and the rest;
    0: none, the net of the first runs; D > 0 needs images of even height and width).
    Shapes: -.
    """

    data_channels: int
    hidden_channels: int = 64
    residual_blocks: int = 4
    embed_dim: int = 64
    groups: int = 8
    down_blocks: int = 0

    def __post_init__(self) -> None:
        check(
            in_range("data_channels", self.data_channels, 1, 2**31),
            in_range("hidden_channels", self.hidden_channels, 1, 2**31),
            in_range("residual_blocks", self.residual_blocks, 0, 2**31),
            in_range("down_blocks", self.down_blocks, 0, 2**31),
            in_range("embed_dim", self.embed_dim, 2, 2**31),
            in_range("groups", self.groups, 1, self.hidden_channels),
            holds(lambda: self.embed_dim % 2 == 0,
                  f"embed_dim must be even, got embed_dim = {self.embed_dim}"),
            holds(lambda: self.hidden_channels % self.groups == 0,
                  f"groups must divide hidden_channels = {self.hidden_channels}, "
                  f"got groups = {self.groups}"),
        )


def film_net_shapes(cfg: EpsFiLMNetConfig) -> dict[str, tuple[int, ...]]:
    """Parameter names and shapes of the FiLM net for cfg, in state_dict (registration) order.

    Shapes: time_mlp.{0,2} (E, E), stem (H, C+1, 3, 3), blocks.{i}.norm{1,2} (H,),
    blocks.{i}.conv{1,2} (H, H, 3, 3), blocks.{i}.film (2H, E), out_norm (H,), out (C, H, 3, 3),
    then down.{j}.* (the half-resolution blocks, shaped as blocks.{i}.*), last so that
    down_blocks = 0 is the net without them, parameter for parameter.
    """
    c, h, e = cfg.data_channels, cfg.hidden_channels, cfg.embed_dim
    shapes: dict[str, tuple[int, ...]] = {}
    for name, shape in [("time_mlp.0", (e, e)), ("time_mlp.2", (e, e)), ("stem", (h, c + 1, 3, 3))]:
        shapes[f"{name}.weight"], shapes[f"{name}.bias"] = shape, (shape[0],)
    for i in range(cfg.residual_blocks):
        shapes.update(_film_block_shapes(f"blocks.{i}", h, e))
    shapes["out_norm.weight"], shapes["out_norm.bias"] = (h,), (h,)
    shapes["out.weight"], shapes["out.bias"] = (c, h, 3, 3), (c,)
    for j in range(cfg.down_blocks):
        shapes.update(_film_block_shapes(f"down.{j}", h, e))
    return shapes


def _film_block_shapes(block: str, h: int, e: int) -> dict[str, tuple[int, ...]]:
    """The parameters of one FiLM block named `block` (blocks.{i} or down.{j}), in order."""
    shapes: dict[str, tuple[int, ...]] = {}
    for part, shape in [
        ("norm1", (h,)),
        ("conv1", (h, h, 3, 3)),
        ("film", (2 * h, e)),
        ("norm2", (h,)),
        ("conv2", (h, h, 3, 3)),
    ]:
        shapes[f"{block}.{part}.weight"], shapes[f"{block}.{part}.bias"] = shape, (shape[0],)
    return shapes


def init_film_params(cfg: EpsFiLMNetConfig, seed: Index) -> Params:
    """Random parameters for `eps_film_net`.

    Formula: conv/linear weights and biases ~ uniform(±1/√fan_in) drawn in the order of
    `film_net_shapes(cfg)` from np.random.default_rng(seed); GroupNorm weight 1, bias 0.
    Shapes: -> dict of float64 arrays (see `film_net_shapes`).
    """
    return _uniform_init(film_net_shapes(cfg), seed)


def eps_film_net(cfg: EpsFiLMNetConfig, params: Params) -> FunctionEpsModel:
    """The FiLM residual ε-net (FiLM: Perez et al. 2018; GroupNorm + SiLU blocks as in DDPM/ADM).

    Formula (x (…, C, H, W), t = t_norm, all convs 3×3 same, GN = group_norm with G groups):
      e = time_mlp.2(silu(time_mlp.0(sinusoidal_embedding(t, E))))
      block_k(h):  r = conv1_k(silu(GN(h, norm1_k)))
                   scale, shift = split(film_k(silu(e)), 2)          # scale first, H each
                   r = GN(r, norm2_k)·(1 + scale) + shift            # per channel
                   block_k(h) = h + conv2_k(silu(r))
      h = stem(append_time_channel(x, t))
      h = block_i(h)  for i < B − ⌊B/2⌋                         # full resolution
      if D > 0:  d = avg_pool2(h);  d = down_j(d) for j < D     # half resolution
                 h = h + upsample_nearest2(d)
      h = block_i(h)  for B − ⌊B/2⌋ ≤ i < B
      ε̂ = out(silu(GN(h, out_norm)))
    The down_j (D = down_blocks) are FiLM blocks with their own parameters and the same e; with
    D = 0 the net is the plain stack of B blocks.
    params must have exactly the keys and shapes of `film_net_shapes(cfg)` (ValueError otherwise).
    Shapes: x (…, C, H, W) -> (…, C, H, W); H and W even when D > 0.
    """
    _check_params(params, film_net_shapes(cfg), "eps_film_net")

    def forward(x: np.ndarray, t_norm: Scalar) -> np.ndarray:
        return _film_forward(cfg, params, x, t_norm, 0.0)

    return FunctionEpsModel(forward)


# ---------------------------------------------------------------------------------------------
# The class-conditional FiLM net (classifier-free guidance, Ho & Salimans 2022)


@dataclass(frozen=True)
class CondFiLMNetConfig:
    """Shape of the class-conditional FiLM net: the FiLM net's fields plus num_classes K.

    Label k ∈ {0..K−1} is class k; label K is the null label ∅ (the unconditional branch).
    Shapes: -.
    """

    data_channels: int
    num_classes: int
    hidden_channels: int = 64
    residual_blocks: int = 4
    embed_dim: int = 64
    groups: int = 8
    down_blocks: int = 0

    def __post_init__(self) -> None:
        check(in_range("num_classes", self.num_classes, 1, 2**31))
        self.film()  # the FiLM part's checks

    def film(self) -> EpsFiLMNetConfig:
        """The unconditional part's config. Shapes: -."""
        return EpsFiLMNetConfig(self.data_channels, self.hidden_channels, self.residual_blocks,
                                self.embed_dim, self.groups, self.down_blocks)


def cond_film_net_shapes(cfg: CondFiLMNetConfig) -> dict[str, tuple[int, ...]]:
    """The FiLM net's parameters, then label_emb.weight (K + 1, E) (row K: the null label).

    Shapes: see `film_net_shapes`; label_emb.weight (num_classes + 1, embed_dim).
    """
    return {**film_net_shapes(cfg.film()),
            "label_emb.weight": (cfg.num_classes + 1, cfg.embed_dim)}


def init_cond_film_params(cfg: CondFiLMNetConfig, seed: Index) -> Params:
    """Random parameters for `cond_film_net`: as `init_film_params`, the label embedding last,
    uniform(±1/√E) (fan_in = E).
    Shapes: -> dict of float64 arrays (see `cond_film_net_shapes`).
    """
    return _uniform_init(cond_film_net_shapes(cfg), seed)


@dataclass(frozen=True)
class LabelModel:
    """A network of (x, t_norm, label): `eps(x, t_norm, y)`, y an int label (or (N,) labels
    for a batch); y = num_classes is the null label ∅. Shapes: x (…, C, H, W) -> (…, C, H, W)."""

    fn: Callable[[np.ndarray, Scalar, object], np.ndarray]
    num_classes: int

    def eps(self, x: Float[np.ndarray, "*batch c h w"], t_norm: Scalar,
            y: object) -> Float[np.ndarray, "*batch c h w"]:
        """The network's output for x at t_norm with label(s) y. Shapes: as x."""
        return self.fn(x, t_norm, y)


def cond_film_net(cfg: CondFiLMNetConfig, params: Params) -> LabelModel:
    """The class-conditional FiLM net (Ho & Salimans 2022, §3–4: one network, the null label for
    the unconditional model): `eps_film_net` with the time embedding e replaced by
      e = time_mlp.2(silu(time_mlp.0(sinusoidal_embedding(t, E)))) + label_emb[y],
    y ∈ {0..K−1} a class, y = K the null label ∅ (trained by label dropout).
    params must have exactly the keys and shapes of `cond_film_net_shapes(cfg)`.
    Shapes: x (C, H, W) with an int y, or (N, C, H, W) with (N,) labels -> x's shape.
    """
    _check_params(params, cond_film_net_shapes(cfg), "cond_film_net")
    film = {k: v for k, v in params.items() if k != "label_emb.weight"}
    table = params["label_emb.weight"]

    def forward(x: np.ndarray, t_norm: Scalar, y: object) -> np.ndarray:
        labels = np.asarray(y)
        if np.any((labels < 0) | (labels > cfg.num_classes)):
            raise ValueError(f"labels must lie in 0..{cfg.num_classes} ({cfg.num_classes}: the "
                             f"null label), got {y!r}")
        return _film_forward(cfg.film(), film, x, t_norm, table[labels])  # (E,) or (N, E)

    return LabelModel(forward, cfg.num_classes)


# ---------------------------------------------------------------------------------------------
# Helpers


def _film_forward(cfg: EpsFiLMNetConfig, p: Params, x: np.ndarray, t_norm: Scalar,
                  extra: object) -> np.ndarray:
    """The FiLM net's forward (see `eps_film_net`) with `extra` added to the time embedding e
    (0 for the unconditional net, the label embedding for `cond_film_net`)."""
    _check_image(x)
    _check_even(x, cfg.down_blocks)
    e = _lin(p, "time_mlp.2", silu(_lin(p, "time_mlp.0", sinusoidal_embedding(t_norm, cfg.embed_dim))))
    e = e + extra  # (E,), or (N, E) with per-sample labels
    h = _conv(p, "stem", append_time_channel(x, t_norm))  # (…, H, h, w)
    split = cfg.residual_blocks - cfg.residual_blocks // 2
    for i in range(split):
        h = _film_block(cfg, p, f"blocks.{i}", h, e)
    if cfg.down_blocks > 0:
        d = avg_pool2(h)  # (…, H, h/2, w/2)
        for j in range(cfg.down_blocks):
            d = _film_block(cfg, p, f"down.{j}", d, e)
        h = h + upsample_nearest2(d)
    for i in range(split, cfg.residual_blocks):
        h = _film_block(cfg, p, f"blocks.{i}", h, e)
    return _conv(p, "out", silu(_norm(p, "out_norm", h, cfg.groups)))


def _film_block(cfg: EpsFiLMNetConfig, p: Params, b: str, h: np.ndarray,
                e: np.ndarray) -> np.ndarray:
    """block_k(h) of `eps_film_net`, k the block named b (blocks.{i} or down.{j})."""
    hid, g = cfg.hidden_channels, cfg.groups
    r = _conv(p, f"{b}.conv1", silu(_norm(p, f"{b}.norm1", h, g)))
    film = _lin(p, f"{b}.film", silu(e))  # (2H,) or (N, 2H)
    scale, shift = film[..., :hid, None, None], film[..., hid:, None, None]  # (…, H, 1, 1)
    r = _norm(p, f"{b}.norm2", r, g) * (1 + scale) + shift
    return h + _conv(p, f"{b}.conv2", silu(r))


# The layers of `_film_forward`, each reading its weight and bias off params by layer name.
# Module-level, not nested in `_film_forward`: see spec/core.py on nested defs.
def _conv(p: Params, name: str, x: np.ndarray) -> np.ndarray:
    return conv2d_same(x, p[f"{name}.weight"], p[f"{name}.bias"])


def _norm(p: Params, name: str, x: np.ndarray, groups: int) -> np.ndarray:
    return group_norm(x, p[f"{name}.weight"], p[f"{name}.bias"], groups)


def _lin(p: Params, name: str, x: np.ndarray) -> np.ndarray:
    return linear(x, p[f"{name}.weight"], p[f"{name}.bias"])


def _check_image(x: np.ndarray) -> None:
    if x.ndim not in (3, 4):
        raise ValueError(f"x must be (C, H, W) or (N, C, H, W), got shape {x.shape}")


def _check_even(x: np.ndarray, down_blocks: int) -> None:
    if down_blocks > 0 and (x.shape[-2] % 2 or x.shape[-1] % 2):
        raise ValueError(f"a FiLM net with down_blocks = {down_blocks} needs images of even height "
                         f"and width (a 2×2 average pooling), got x of shape {x.shape}")


def _uniform_init(shapes: dict[str, tuple[int, ...]], seed: Index) -> Params:
    rng = np.random.default_rng(seed)
    params: Params = {}
    for name, shape in shapes.items():
        is_norm = "norm" in name.rsplit(".", 2)[-2]
        if is_norm:  # GroupNorm: weight 1, bias 0
            params[name] = np.ones(shape) if name.endswith("weight") else np.zeros(shape)
            continue
        weight_shape = shapes[name.replace(".bias", ".weight")]
        fan_in = int(np.prod(weight_shape[1:]))
        bound = 1 / np.sqrt(fan_in)
        params[name] = rng.uniform(-bound, bound, size=shape)
    return params


def _conv_config_of(params: Params, residual: bool) -> EpsConvNetConfig:
    """Read C, H and (for the residual net) the block count off the stem and out weights."""
    for key in ("stem.weight", "out.weight"):
        if key not in params:
            raise ValueError(f"params is missing {key!r}, got keys {sorted(params)}")
    h, c = params["out.weight"].shape[1], params["out.weight"].shape[0]
    blocks = 0
    while residual and f"blocks.{blocks}.conv1.weight" in params:
        blocks += 1
    return EpsConvNetConfig(c, h, blocks)


def _check_params(params: Params, shapes: dict[str, tuple[int, ...]], who: str) -> None:
    missing = [k for k in shapes if k not in params]
    extra = [k for k in params if k not in shapes]
    if missing or extra:
        raise ValueError(
            f"{who}: params keys do not match the config: missing {missing}, unexpected {extra}"
        )
    for key, shape in shapes.items():
        if params[key].shape != shape:
            raise ValueError(
                f"{who}: params[{key!r}] must have shape {shape}, got {params[key].shape}"
            )
