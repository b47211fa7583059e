"""ε-models as torch modules, and the twins of every `spec.model` function.

One dict of arrays drives both sides: the keys of a module's `state_dict()` are the spec's
parameter names, `to_spec_params(module)` gives the spec's float64 NumPy dict and
`from_spec_params(cfg, params)` builds the module from one. `init_params` / `init_film_params`
draw the same numbers as the spec (NumPy `default_rng(seed)`, uniform(±1/√fan_in) in state_dict
order; GroupNorm weight 1, bias 0).

Every module is called as `model(x, t_norm)` (also `model.eps(x, t_norm)`), with x (B, C, H, W)
and t_norm a float, a 0-d tensor or a (B,) float tensor: t/T, or the PF ODE's continuous t.

* `EpsResidualConvNet` — TorchLean's epsResidualConvNet:
  h = relu(stem(append_time_channel(x, t))); h = relu(h + conv2(relu(conv1(h)))) per block;
  ε̂ = out(h).
* `EpsConvNet` — TorchLean's epsConvNet: ε̂ = out(relu(stem(append_time_channel(x, t)))).
* `EpsFiLMNet` — the default training model (docs/default-network.md): a sinusoidal embedding of t through
  a 2-layer MLP scales and shifts (FiLM) each GroupNorm/SiLU residual block; `down_blocks` > 0
  adds a stage of blocks at half the resolution between its two halves. Built from plain
  nn modules with no per-sample loops, so it runs under bf16 autocast and with channels_last;
  the embedding is computed in at least float32.
* `CondFiLMNet` — the FiLM net with a class-label embedding (classifier-free guidance).

`MODELS` is the one description of the networks: kind -> (config class, module class).
`build_model(kind, config, prediction)` builds one; `describe_model(module)` is what a checkpoint
stores ({"kind", "config": asdict(config), "prediction"}) and `model_from_description` reads it
back. Nothing else guesses a network's kind.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

# ---------------------------------------------------------------------------------------------
# Layers (the spec's functions, batched; channel axis −3)


def append_time_channel(x: Tensor, t_norm: Tensor | float) -> Tensor:
    """Append a constant channel of value t_norm as the LAST channel.
    Shapes: x (…, C, H, W), t_norm float, 0-d or (B,) -> (…, C+1, H, W) in x's dtype."""
    time_shape = x.shape[:-3] + (1,) + x.shape[-2:]
    if isinstance(t_norm, Tensor):
        t = t_norm.to(device=x.device, dtype=x.dtype)
        time = t.reshape(t.shape + (1, 1, 1)).expand(time_shape)  # (B, 1, H, W)
    else:
        time = x.new_full(time_shape, float(t_norm))
    return torch.cat([x, time], dim=-3)


def conv2d_same(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """3×3 cross-correlation, stride 1, zero padding 1 (nn.Conv2d(i, o, 3, padding=1)).
    Shapes: x (…, I, H, W), weight (O, I, 3, 3), bias (O,) -> (…, O, H, W)."""
    return F.conv2d(x, weight, bias, padding=1)


def relu(x: Tensor) -> Tensor:
    """max(x, 0)."""
    return F.relu(x)


def silu(x: Tensor) -> Tensor:
    """x·sigmoid(x)."""
    return F.silu(x)


def group_norm(
    x: Tensor, weight: Tensor, bias: Tensor, groups: int, eps: float = 1e-5
) -> Tensor:
    """GroupNorm (Wu & He 2018; nn.GroupNorm semantics, biased variance).
    Shapes: x (…, C, H, W) with … of 0 or 1 axes, weight, bias (C,) -> (…, C, H, W)."""
    if x.ndim == 3:
        return F.group_norm(x[None], groups, weight, bias, eps)[0]
    return F.group_norm(x, groups, weight, bias, eps)


def linear(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """x·Wᵀ + b. Shapes: (…, I), (O, I), (O,) -> (…, O)."""
    return F.linear(x, weight, bias)


def sinusoidal_embedding(
    t_norm: Tensor | float, dim: int, dtype: torch.dtype | None = None
) -> Tensor:
    """half = dim // 2; freqs_j = exp(−ln(10000)·j/half); args = 1000·t_norm·freqs;
    emb = concat(sin(args), cos(args))   (Vaswani et al. 2017 §3.5; DDPM Appendix B).
    Shapes: t_norm float or 0-d -> (dim,); (B,) -> (B, dim). dtype: float64 for a Python float,
    else t_norm's dtype promoted to at least float32 (unless `dtype` is given)."""
    if dim < 2 or dim % 2:
        raise ValueError(f"dim must be even and >= 2, got dim = {dim}")
    if isinstance(t_norm, Tensor):
        dtype = dtype or torch.promote_types(t_norm.dtype, torch.float32)
        t = t_norm.to(dtype)
    else:
        dtype = dtype or torch.float64
        t = torch.tensor(float(t_norm), dtype=dtype)
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=dtype, device=t.device) / half)
    args = 1000 * t[..., None] * freqs  # (…, half)
    return torch.cat([torch.sin(args), torch.cos(args)], dim=-1)


def avg_pool2(x: Tensor) -> Tensor:
    """y[c, r, s] = ¼·Σ_{a, b ∈ {0,1}} x[c, 2r + a, 2s + b]: 2×2 average pooling, stride 2.
    Shapes: x (…, C, H, W), H and W even -> (…, C, H/2, W/2)."""
    if x.ndim not in (3, 4) or x.shape[-2] % 2 or x.shape[-1] % 2:
        raise ValueError(f"avg_pool2 needs x of shape (…, C, H, W) with H and W even, got "
                         f"{tuple(x.shape)}")
    return F.avg_pool2d(x, 2)


def upsample_nearest2(x: Tensor) -> Tensor:
    """y[c, r, s] = x[c, ⌊r/2⌋, ⌊s/2⌋]: nearest-neighbour 2× upsampling.
    Shapes: x (…, C, H, W) -> (…, C, 2H, 2W)."""
    return x.repeat_interleave(2, dim=-2).repeat_interleave(2, dim=-1)


def _time_vector(t_norm: Tensor | float, x: Tensor) -> Tensor:
    """t_norm as a (B,) tensor on x's device, in at least float32 (float64 for float64 x)."""
    dtype = torch.promote_types(x.dtype, torch.float32)
    if isinstance(t_norm, Tensor):
        t = t_norm.to(device=x.device, dtype=dtype)
    else:
        t = torch.full((), float(t_norm), dtype=dtype, device=x.device)
    return t.expand(x.shape[0]) if t.ndim == 0 else t


# ---------------------------------------------------------------------------------------------
# Configs


@dataclass(frozen=True)
class EpsConvNetConfig:
    """Shape of the TorchLean conv nets: data_channels C, hidden_channels H, residual_blocks
    (blocks of the residual net; the plain net has none)."""

    data_channels: int
    hidden_channels: int
    residual_blocks: int = 2

    def __post_init__(self) -> None:
        _check_positive("data_channels", self.data_channels, 1)
        _check_positive("hidden_channels", self.hidden_channels, 1)
        _check_positive("residual_blocks", self.residual_blocks, 0)


@dataclass(frozen=True)
class EpsFiLMNetConfig:
    """Shape of the FiLM residual net: data_channels C; hidden_channels H (divisible by groups);
    residual_blocks B; embed_dim E (even; the time embedding width); groups G (GroupNorm);
    down_blocks D (blocks at half resolution after the first B − ⌊B/2⌋; 0: none; D > 0 needs
    images of even height and width)."""

    data_channels: int
    hidden_channels: int = 64
    residual_blocks: int = 4
    embed_dim: int = 64
    groups: int = 8
    down_blocks: int = 0

    def __post_init__(self) -> None:
        _check_positive("data_channels", self.data_channels, 1)
        _check_positive("hidden_channels", self.hidden_channels, 1)
        _check_positive("residual_blocks", self.residual_blocks, 0)
        _check_positive("down_blocks", self.down_blocks, 0)
        _check_positive("embed_dim", self.embed_dim, 2)
        _check_positive("groups", self.groups, 1)
        if self.embed_dim % 2:
            raise ValueError(f"embed_dim must be even, got embed_dim = {self.embed_dim}")
        if self.hidden_channels % self.groups:
            raise ValueError(
                f"groups must divide hidden_channels = {self.hidden_channels}, "
                f"got groups = {self.groups}"
            )


def _check_positive(name: str, value: int, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {name} = {value!r}")


# ---------------------------------------------------------------------------------------------
# Modules


class _EpsModule(nn.Module):
    prediction: str = "eps"  # what the network was trained to predict (runtime.prediction)
    num_classes: int = 0  # class labels the network takes after (x, t_norm) (0: unconditional)

    def eps(self, x: Tensor, t_norm: Tensor | float, *args: Any) -> Tensor:
        """The spec's spelling: model.eps(x, t_norm) = model(x, t_norm)."""
        return self(x, t_norm, *args)


def _conv3(c_in: int, c_out: int) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, padding=1)


class ResidualBlock(nn.Module):
    """r = conv2(relu(conv1(h))) (the skip and the outer relu are applied by the net)."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.conv1 = _conv3(hidden, hidden)
        self.conv2 = _conv3(hidden, hidden)

    def forward(self, h: Tensor) -> Tensor:
        return self.conv2(F.relu(self.conv1(h)))


class EpsResidualConvNet(_EpsModule):
    """TorchLean's residual ε-net. Shapes: x (B, C, H, W), t_norm float or (B,) -> (B, C, H, W)."""

    def __init__(self, cfg: EpsConvNetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        c, hid = cfg.data_channels, cfg.hidden_channels
        self.stem = _conv3(c + 1, hid)
        self.blocks = nn.ModuleList(ResidualBlock(hid) for _ in range(cfg.residual_blocks))
        self.out = _conv3(hid, c)

    def forward(self, x: Tensor, t_norm: Tensor | float) -> Tensor:
        h = F.relu(self.stem(append_time_channel(x, t_norm)))  # (B, H, h, w)
        for block in self.blocks:
            h = F.relu(h + block(h))
        return self.out(h)


class EpsConvNet(_EpsModule):
    """TorchLean's plain ε-net: out(relu(stem(x ‖ t))). Shapes: as EpsResidualConvNet."""

    def __init__(self, cfg: EpsConvNetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.stem = _conv3(cfg.data_channels + 1, cfg.hidden_channels)
        self.out = _conv3(cfg.hidden_channels, cfg.data_channels)

    def forward(self, x: Tensor, t_norm: Tensor | float) -> Tensor:
        return self.out(F.relu(self.stem(append_time_channel(x, t_norm))))


class FiLMBlock(nn.Module):
    """r = conv1(silu(GN(h))); r = GN(r)·(1 + scale) + shift; h + conv2(silu(r))."""

    def __init__(self, hidden: int, embed_dim: int, groups: int) -> None:
        super().__init__()
        # Registration order = state_dict order = the spec's init order.
        self.norm1 = nn.GroupNorm(groups, hidden)
        self.conv1 = _conv3(hidden, hidden)
        self.film = nn.Linear(embed_dim, 2 * hidden)
        self.norm2 = nn.GroupNorm(groups, hidden)
        self.conv2 = _conv3(hidden, hidden)

    def forward(self, h: Tensor, silu_e: Tensor) -> Tensor:
        r = self.conv1(F.silu(self.norm1(h)))
        scale, shift = self.film(silu_e)[:, :, None, None].chunk(2, dim=1)  # (B, H, 1, 1) each
        r = self.norm2(r) * (1 + scale) + shift
        return h + self.conv2(F.silu(r))


class EpsFiLMNet(_EpsModule):
    """The FiLM residual ε-net (the default training model). Formula: see `spec.model.eps_film_net`.
    Shapes: x (B, C, H, W), t_norm float, 0-d or (B,) -> (B, C, H, W)."""

    def __init__(self, cfg: EpsFiLMNetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        c, hid, e = cfg.data_channels, cfg.hidden_channels, cfg.embed_dim
        self.time_mlp = nn.Sequential(nn.Linear(e, e), nn.SiLU(), nn.Linear(e, e))
        self.stem = _conv3(c + 1, hid)
        self.blocks = nn.ModuleList(FiLMBlock(hid, e, cfg.groups) for _ in range(cfg.residual_blocks))
        self.out_norm = nn.GroupNorm(cfg.groups, hid)
        self.out = _conv3(hid, c)
        # The half-resolution stage, registered last: down_blocks = 0 keeps the parameters (and
        # the init draws) of the net without it.
        self.down = nn.ModuleList(FiLMBlock(hid, e, cfg.groups) for _ in range(cfg.down_blocks))

    def forward(self, x: Tensor, t_norm: Tensor | float) -> Tensor:
        return self._forward(x, t_norm, None)

    def _forward(self, x: Tensor, t_norm: Tensor | float, extra: Tensor | None) -> Tensor:
        """The FiLM forward with `extra` (B, E) added to the time embedding (None: nothing)."""
        if len(self.down) and (x.shape[-2] % 2 or x.shape[-1] % 2):
            raise ValueError(f"a FiLM net with down_blocks = {len(self.down)} needs images of even "
                             f"height and width (a 2×2 average pooling), got x of shape "
                             f"{tuple(x.shape)}")
        t = _time_vector(t_norm, x)  # (B,), float32 or float64
        emb = sinusoidal_embedding(t, self.cfg.embed_dim)  # (B, E)
        e = self.time_mlp(emb.to(self.time_mlp[0].weight.dtype))  # (B, E)
        silu_e = F.silu(e if extra is None else e + extra)  # (B, E)
        h = self.stem(append_time_channel(x, t))  # (B, H, h, w)
        split = len(self.blocks) - len(self.blocks) // 2
        for block in self.blocks[:split]:
            h = block(h, silu_e)
        if len(self.down):
            d = avg_pool2(h)  # (B, H, h/2, w/2)
            for block in self.down:
                d = block(d, silu_e)
            h = h + upsample_nearest2(d)
        for block in self.blocks[split:]:
            h = block(h, silu_e)
        return self.out(F.silu(self.out_norm(h)))


@dataclass(frozen=True)
class CondFiLMNetConfig:
    """Shape of the class-conditional FiLM net: the FiLM net's fields plus num_classes K
    (labels 0..K−1; K is the null label ∅)."""

    data_channels: int
    num_classes: int
    hidden_channels: int = 64
    residual_blocks: int = 4
    embed_dim: int = 64
    groups: int = 8
    down_blocks: int = 0

    def __post_init__(self) -> None:
        _check_positive("num_classes", self.num_classes, 1)
        self.film()

    def film(self) -> EpsFiLMNetConfig:
        """The unconditional part's config."""
        return EpsFiLMNetConfig(self.data_channels, self.hidden_channels, self.residual_blocks,
                                self.embed_dim, self.groups, self.down_blocks)


class CondFiLMNet(EpsFiLMNet):
    """The class-conditional FiLM net (Ho & Salimans 2022): the FiLM net with a label embedding
    added to the time embedding; `model(x, t_norm, y)`, y (B,) labels in 0..K (K = ∅, also
    what y = None means). Formula: see `spec.model.cond_film_net`."""

    def __init__(self, cfg: CondFiLMNetConfig) -> None:
        super().__init__(cfg.film())
        self.cfg = cfg  # type: ignore[assignment]
        self.num_classes = cfg.num_classes
        self.label_emb = nn.Embedding(cfg.num_classes + 1, cfg.embed_dim)

    def forward(self, x: Tensor, t_norm: Tensor | float, y: Tensor | None = None) -> Tensor:
        if y is None:
            y = torch.full((x.shape[0],), self.num_classes, dtype=torch.long, device=x.device)
        extra = self.label_emb(y.to(device=x.device, dtype=torch.long))  # (B, E)
        return self._forward(x, t_norm, extra.to(self.time_mlp[0].weight.dtype))


# ---------------------------------------------------------------------------------------------
# Parameters: init, and the bridge to the spec's dict of float64 arrays

ParamsLike = Mapping[str, Any]


def _uniform_init(cls: type[nn.Module], cfg: Any, seed: int) -> dict[str, Tensor]:
    """The spec's init: uniform(±1/√fan_in) in state_dict order from default_rng(seed);
    GroupNorm weight 1, bias 0 (no draws)."""
    with torch.device("meta"):
        module = cls(cfg)
    rng = np.random.default_rng(seed)
    shapes = {k: tuple(v.shape) for k, v in module.state_dict().items()}  # meta tensors
    params: dict[str, Tensor] = {}
    for name, shape in shapes.items():
        if "norm" in name.rsplit(".", 2)[-2]:
            value = np.ones(shape) if name.endswith("weight") else np.zeros(shape)
        else:
            fan_in = int(np.prod(shapes[name.replace(".bias", ".weight")][1:]))
            bound = 1 / np.sqrt(fan_in)
            value = rng.uniform(-bound, bound, size=shape)
        params[name] = torch.from_numpy(value)
    return params


def init_params(cfg: EpsConvNetConfig, seed: int) -> dict[str, Tensor]:
    """Parameters of the residual net (its stem/out keys also drive the plain net), equal to
    `spec.model.init_params(cfg, seed)`. Shapes: -> dict of float64 CPU tensors."""
    return _uniform_init(EpsResidualConvNet, _as_config(EpsConvNetConfig, cfg), seed)


def init_film_params(cfg: EpsFiLMNetConfig, seed: int) -> dict[str, Tensor]:
    """Parameters of the FiLM net, equal to `spec.model.init_film_params(cfg, seed)`.
    Shapes: -> dict of float64 CPU tensors."""
    return _uniform_init(EpsFiLMNet, _as_config(EpsFiLMNetConfig, cfg), seed)


def init_cond_film_params(cfg: CondFiLMNetConfig, seed: int) -> dict[str, Tensor]:
    """Parameters of the conditional FiLM net, equal to `spec.model.init_cond_film_params`.
    Shapes: -> dict of float64 CPU tensors."""
    return _uniform_init(CondFiLMNet, _as_config(CondFiLMNetConfig, cfg), seed)


def cond_film_net(cfg: CondFiLMNetConfig, params: ParamsLike) -> CondFiLMNet:
    """The conditional FiLM net for cfg with these parameters (keys and shapes must match)."""
    return _load(CondFiLMNet, _as_config(CondFiLMNetConfig, cfg), params, *_params_dtype_device(params))



def to_spec_params(module: nn.Module) -> dict[str, np.ndarray]:
    """The module's state_dict as the spec's dict of float64 NumPy arrays (copied to the CPU)."""
    return {
        k: v.detach().to(device="cpu", dtype=torch.float64).numpy().copy()
        for k, v in module.state_dict().items()
    }


def _load(cls: type[nn.Module], cfg: Any, params: ParamsLike, dtype: torch.dtype, device: Any) -> Any:
    """cls(cfg) built on the meta device (no throw-away init), then filled from params (copied)."""
    with torch.device("meta"):
        module = cls(cfg)
    module = module.to_empty(device=device).to(dtype=dtype)
    state = {k: v if isinstance(v, Tensor) else torch.from_numpy(np.asarray(v))
             for k, v in params.items()}
    module.load_state_dict(state, strict=True)
    return module


def spec_config_kind(cfg: Any, params: ParamsLike) -> str:
    """The kind (a key of MODELS) of a spec-side network given as (config, params): the spec's
    configs carry no kind, so it is read off them once, here. A config with `num_classes` is
    cond_film, one with `embed_dim` film; a conv config is residual when params hold `blocks.*`
    keys, else conv."""
    if hasattr(cfg, "num_classes"):
        return "cond_film"
    if hasattr(cfg, "embed_dim"):
        return "film"
    return "residual" if any(k.startswith("blocks.") for k in params) else "conv"


def from_spec_params(
    cfg: Any,
    params: ParamsLike,
    dtype: torch.dtype = torch.float64,
    device: str | torch.device = "cpu",
    kind: str | None = None,
) -> nn.Module:
    """The module of `kind` (default: `spec_config_kind(cfg, params)`) with the spec's parameters.
    Spec config objects are accepted (same fields). Keys and shapes must match exactly
    (load_state_dict strict)."""
    kind = spec_config_kind(cfg, params) if kind is None else kind
    config_cls, module_cls = MODELS[kind]
    return _load(module_cls, _as_config(config_cls, cfg), params, dtype, device)


def _shape(params: ParamsLike, key: str) -> tuple[int, ...]:
    if key not in params:
        raise ValueError(f"params is missing {key!r}, got keys {sorted(params)}")
    return tuple(params[key].shape)


def _params_dtype_device(params: ParamsLike) -> tuple[torch.dtype, torch.device]:
    first = next(iter(params.values()))
    if isinstance(first, Tensor):
        return first.dtype, first.device
    return torch.float64, torch.device("cpu")


def eps_conv_net(params: ParamsLike) -> EpsConvNet:
    """TorchLean's plain ε-net with these parameters (only `stem.*`, `out.*` are read; shapes
    give C and H). The module takes the params' dtype/device (float64 CPU for NumPy arrays)."""
    c, hid = _shape(params, "out.weight")[:2]
    keys = ("stem.weight", "stem.bias", "out.weight", "out.bias")
    sub = {k: params[k] for k in keys if k in params}
    return _load(EpsConvNet, EpsConvNetConfig(c, hid, 0), sub, *_params_dtype_device(params))


def eps_residual_conv_net(params: ParamsLike) -> EpsResidualConvNet:
    """TorchLean's residual ε-net with these parameters (the block count is read off the keys)."""
    c, hid = _shape(params, "out.weight")[:2]
    blocks = 0
    while f"blocks.{blocks}.conv1.weight" in params:
        blocks += 1
    cfg = EpsConvNetConfig(c, hid, blocks)
    return _load(EpsResidualConvNet, cfg, params, *_params_dtype_device(params))


def eps_film_net(cfg: EpsFiLMNetConfig, params: ParamsLike) -> EpsFiLMNet:
    """The FiLM ε-net for cfg with these parameters (keys and shapes must match exactly)."""
    return _load(EpsFiLMNet, _as_config(EpsFiLMNetConfig, cfg), params, *_params_dtype_device(params))




def _as_config(config_cls: type, cfg: Any) -> Any:
    """cfg as a `config_cls` (a spec config or another runtime config: the fields it shares; a
    mapping: its items)."""
    if isinstance(cfg, config_cls):
        return cfg
    names = [f.name for f in dataclasses.fields(config_cls)]
    if isinstance(cfg, Mapping):
        return config_cls(**{n: cfg[n] for n in names if n in cfg})
    return config_cls(**{n: getattr(cfg, n) for n in names if hasattr(cfg, n)})


# ---------------------------------------------------------------------------------------------
# The networks by kind: the one table every builder, checkpoint and command looks up

MODELS: dict[str, tuple[type, type[nn.Module]]] = {
    "conv": (EpsConvNetConfig, EpsConvNet),
    "residual": (EpsConvNetConfig, EpsResidualConvNet),
    "film": (EpsFiLMNetConfig, EpsFiLMNet),
    "cond_film": (CondFiLMNetConfig, CondFiLMNet),
}


def model_kind(module: nn.Module) -> str:
    """The key of MODELS whose module class `module` is (exactly)."""
    for kind, (_, module_cls) in MODELS.items():
        if type(module) is module_cls:
            return kind
    raise ValueError(f"{type(module).__name__} is not a network of runtime.model.MODELS")


def build_model(kind: str, config: Any, prediction: str = "eps") -> nn.Module:
    """A freshly constructed network (float32, CPU, torch's default init) of `kind`, from its
    config object or `asdict(config)`; `prediction` is what it predicts (ε, x0 or v)."""
    from runtime.prediction import check_prediction

    if kind not in MODELS:
        raise ValueError(f"unknown model kind {kind!r}; expected one of {sorted(MODELS)}")
    config_cls, module_cls = MODELS[kind]
    if isinstance(config, Mapping):
        unknown = sorted(set(config) - {f.name for f in dataclasses.fields(config_cls)})
        if unknown:
            raise ValueError(f"{config_cls.__name__} has no field {unknown[0]!r}")
        config = config_cls(**config)
    elif not isinstance(config, config_cls):
        raise TypeError(f"a {kind} network needs a {config_cls.__name__}, got "
                        f"{type(config).__name__}")
    module = module_cls(config)
    module.prediction = check_prediction(prediction)
    return module


def describe_model(module: nn.Module) -> dict[str, Any]:
    """What a checkpoint stores of a network: {"kind", "config": asdict(config), "prediction"}."""
    return {"kind": model_kind(module), "config": dataclasses.asdict(module.cfg),
            "prediction": module.prediction}


def model_from_description(description: Mapping[str, Any]) -> nn.Module:
    """`build_model` from `describe_model(...)`'s dict (raises KeyError/TypeError/ValueError)."""
    return build_model(description["kind"], dict(description["config"]),
                       description.get("prediction", "eps"))


__all__ = [
    "CondFiLMNet",
    "CondFiLMNetConfig",
    "EpsConvNet",
    "EpsConvNetConfig",
    "EpsFiLMNet",
    "EpsFiLMNetConfig",
    "EpsResidualConvNet",
    "MODELS",
    "append_time_channel",
    "avg_pool2",
    "build_model",
    "cond_film_net",
    "conv2d_same",
    "describe_model",
    "eps_conv_net",
    "eps_film_net",
    "eps_residual_conv_net",
    "from_spec_params",
    "group_norm",
    "init_cond_film_params",
    "init_film_params",
    "init_params",
    "linear",
    "model_from_description",
    "model_kind",
    "relu",
    "silu",
    "sinusoidal_embedding",
    "spec_config_kind",
    "to_spec_params",
    "upsample_nearest2",
]
