"""The slice classifier: VGG-16 convolutions, a 1x1 convolution to 2 classes, global average pooling.

Paper section 3.1.2 (METHOD section 6): the three fully connected layers of VGG-16 are replaced
by one convolution, so the network ends in a 2-channel class map whose spatial average is the
pair of logits (background, brain). Because the logits are averages of a spatial map, every
location of the last feature maps contributes to the decision, which is what lets a CAM
localise the brain from image-level labels alone.

Layout (module names as in ``model.named_modules()``)::

    features.0 .. features.30   torchvision's VGG-16 ``features`` at width 1: conv at
                                0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28; ReLU after each;
                                max pooling at 4, 9, 16, 23, 30
    classifier                  1x1 convolution, C5 -> 2 channels (the class map)
    pool                        global average pooling -> logits [B, 2]

Input: images ``[B, in_channels, H, W]`` float in [0, 1] (H, W divisible by 32). The model
normalises internally, ``(x - 0.449) / 0.226`` (the channel average of ImageNet's mean and
standard deviation), so ImageNet weights whose first layer is summed over RGB see the same
activations as the RGB network fed the grey image repeated on three channels.

``dilated=True`` follows the authors' code (output stride 8): the fourth pooling becomes a
3x3 stride-1 pooling, the fifth block's convolutions use dilation 2, and the fifth pooling is
removed (an ``Identity`` keeps the index ``features.30``). The authors also put dropout after
the fifth block's ReLUs; it is left out here so that module names stay torchvision's.

``batch_norm=True`` (not in the paper; for thin networks trained from scratch on a CPU) adds
batch normalisation after every convolution, inside the convolution's module
(:class:`Conv2dBN`), so module indices and the ``features.N.weight`` / ``bias`` shapes stay
those above and ``BLOCK_LAYERS`` still names the last ReLU of each block.

Every ReLU is ``inplace=False`` so that forward hooks (Grad-CAM) see unmodified activations.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable

import torch
from torch import nn

#: VGG-16 configuration "D": output channels of each 3x3 convolution, "M" = max pooling.
VGG16_LAYOUT: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M",
                                       512, 512, 512, "M", 512, 512, 512, "M")

#: Last ReLU of each VGG block and the class-map convolution (module names).
BLOCK_LAYERS: dict[str, str] = {
    "block1": "features.3",
    "block2": "features.8",
    "block3": "features.15",
    "block4": "features.22",
    "block5": "features.29",
    "head": "classifier",
}

#: Grey-level normalisation applied inside ``forward`` (mean / std of ImageNet's channels).
GREY_MEAN = 0.449
GREY_STD = 0.226

IMAGENET_FILE = "vgg16-397923af.pth"


def resolve_layers(names: Iterable[str] | str) -> list[str]:
    """Map block names (``block1`` .. ``block5``, ``head``) to module names.

    Module names (e.g. ``"features.22"``) pass through unchanged.

    Parameters
    ----------
    names : str or iterable of str
        Block names and/or module names of :class:`VGGClassifier`.

    Returns
    -------
    list of str
        Module names, in the given order.
    """
    if isinstance(names, str):
        names = [names]
    known_modules = set(_module_names())
    out = []
    for name in names:
        if name in BLOCK_LAYERS:
            out.append(BLOCK_LAYERS[name])
        elif name in known_modules:
            out.append(name)
        else:
            raise ValueError(f"unknown layer {name!r}: use one of {sorted(BLOCK_LAYERS)} "
                             f"or a module name such as 'features.22'")
    return out


def _module_names() -> list[str]:
    """Module names of the network (without building it)."""
    n = sum(1 for _ in _layer_specs(False))
    return [f"features.{i}" for i in range(n)] + ["features", "classifier", "pool"]


def _layer_specs(dilated: bool) -> Iterable[tuple[str, int]]:
    """Yield (kind, channels) per ``features`` index: conv/relu/pool/pool_s1/identity."""
    block = 1
    for v in VGG16_LAYOUT:
        if v == "M":
            if dilated and block == 4:
                yield "pool_s1", 0
            elif dilated and block == 5:
                yield "identity", 0
            else:
                yield "pool", 0
            block += 1
        else:
            yield ("conv_dil" if (dilated and block == 5) else "conv"), int(v)
            yield "relu", 0


def scaled_channels(channels: int, width: float) -> int:
    """Channels of a layer at a width factor (at least 1)."""
    return max(1, int(round(channels * width)))


class Conv2dBN(nn.Conv2d):
    """A 3x3 convolution followed by batch normalisation, as one module.

    Keeping the normalisation inside the convolution's module keeps the ``features.N``
    indices (and the ``weight`` / ``bias`` names) of the plain network; the normalisation's
    parameters are ``features.N.bn.*``.
    """

    def __init__(self, in_channels: int, out_channels: int, **kwargs: Any) -> None:
        super().__init__(in_channels, out_channels, **kwargs)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(super().forward(x))


def _make_features(width: float, in_channels: int, dilated: bool,
                   batch_norm: bool = False, padding_mode: str = "zeros") -> tuple[nn.Sequential, int]:
    layers: list[nn.Module] = []
    c_in = in_channels
    conv_type = Conv2dBN if batch_norm else nn.Conv2d
    for kind, c in _layer_specs(dilated):
        if kind in ("conv", "conv_dil"):
            c_out = scaled_channels(c, width)
            d = 2 if kind == "conv_dil" else 1
            layers.append(conv_type(c_in, c_out, kernel_size=3, padding=d, dilation=d, padding_mode=padding_mode))
            c_in = c_out
        elif kind == "relu":
            layers.append(nn.ReLU(inplace=False))
        elif kind == "pool":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        elif kind == "pool_s1":
            layers.append(nn.MaxPool2d(kernel_size=3, stride=1, padding=1))
        else:
            layers.append(nn.Identity())
    return nn.Sequential(*layers), c_in


#: Global pooling of the class map into logits (``classifier.pooling``).
POOLINGS = ("avg", "max", "lse")
#: Input normalisations (``classifier.input_norm``).
INPUT_NORMS = ("imagenet", "zero_background")
#: Padding of the 3x3 convolutions (``classifier.padding``), as ``nn.Conv2d``'s ``padding_mode``.
PADDINGS = ("zeros", "reflect", "replicate")


class LogSumExpPool(nn.Module):
    """Log-sum-exp pooling of a map ``[B, C, h, w] -> [B, C, 1, 1]``.

    ``(1/r) log( (1/Z) sum_i exp(r x_i) )`` moves from global average pooling (``r -> 0``) to
    global max pooling (``r -> inf``). A pooled score that a few locations dominate makes the
    class map itself, and so the Grad-CAM of the deep layers, peak where the evidence is,
    while every location still receives a gradient.

    Parameters
    ----------
    r : float
        Sharpness (> 0).
    """

    def __init__(self, r: float = 5.0) -> None:
        super().__init__()
        if not r > 0:
            raise ValueError(f"log-sum-exp pooling needs r > 0, got {r!r}")
        self.r = float(r)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(2).float() * self.r
        z = torch.logsumexp(flat, dim=2) - torch.log(torch.tensor(float(flat.shape[2]), device=x.device))
        return (z / self.r).to(x.dtype)[..., None, None]


def make_pooling(pooling: str, lse_r: float = 5.0) -> nn.Module:
    """Global pooling module named by ``pooling`` (one of :data:`POOLINGS`)."""
    if pooling == "avg":
        return nn.AdaptiveAvgPool2d(1)
    if pooling == "max":
        return nn.AdaptiveMaxPool2d(1)
    if pooling == "lse":
        return LogSumExpPool(lse_r)
    raise ValueError(f"classifier.pooling must be one of {POOLINGS}, got {pooling!r}")


class VGGClassifier(nn.Module):
    """VGG-16 features + 1x1 convolution to 2 classes + global average pooling.

    Parameters
    ----------
    width : float
        Channel multiplier (1.0 = VGG-16's 64..512 channels).
    in_channels : int
        Channels of the input images (1 for the prepared slices).
    dilated : bool
        Output stride 8 (see module docstring) instead of 32.
    num_classes : int
        Output logits (2: background, brain).
    batch_norm : bool
        Batch normalisation after every convolution (inside the convolution's module, see
        :class:`Conv2dBN`). Not in the paper; it lets a thin network trained from scratch
        learn within a few epochs.
    pooling : {"avg", "max", "lse"}
        Global pooling of the class map into logits: average (the paper), max, or
        log-sum-exp with sharpness ``lse_r`` (see :class:`LogSumExpPool`).
    lse_r : float
        Sharpness of log-sum-exp pooling.
    input_norm : {"imagenet", "zero_background"}
        ``imagenet``: ``(x - 0.449) / 0.226`` (what ImageNet weights expect; the air around the
        mother, 0 in the slices, becomes -2, so the convolutions' zero padding draws an edge
        along the image border). ``zero_background``: ``x / 0.226``, air stays 0 and the
        padding looks like more air.
    padding : {"zeros", "reflect", "replicate"}
        Padding of every 3x3 convolution. Zero padding (VGG-16, the paper) marks the image
        border in every layer, which lets a network trained from scratch learn *where* in the
        frame it is (Kayhan and van Gemert, CVPR 2020) and answer from position-specific
        features; reflection or replication padding hides the border.
    """

    #: Names that :func:`umcam_lib.cam.gradcam.resolve_layer_names` accepts for module names.
    layer_aliases: dict[str, str] = BLOCK_LAYERS

    def __init__(self, width: float = 1.0, in_channels: int = 1, dilated: bool = False,
                 num_classes: int = 2, batch_norm: bool = False, pooling: str = "avg",
                 lse_r: float = 5.0, input_norm: str = "imagenet", padding: str = "zeros") -> None:
        super().__init__()
        if not width > 0:
            raise ValueError(f"width must be > 0, got {width!r}")
        if in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {in_channels!r}")
        self.width = float(width)
        self.in_channels = int(in_channels)
        self.dilated = bool(dilated)
        self.num_classes = int(num_classes)
        self.batch_norm = bool(batch_norm)
        if input_norm not in INPUT_NORMS:
            raise ValueError(f"classifier.input_norm must be one of {INPUT_NORMS}, got {input_norm!r}")
        self.pooling = str(pooling)
        self.lse_r = float(lse_r)
        self.input_norm = str(input_norm)
        if padding not in PADDINGS:
            raise ValueError(f"classifier.padding must be one of {PADDINGS}, got {padding!r}")
        self.padding = str(padding)
        self.features, c5 = _make_features(self.width, self.in_channels, self.dilated, self.batch_norm,
                                           self.padding)
        self.classifier = nn.Conv2d(c5, self.num_classes, kernel_size=1)
        self.pool = make_pooling(self.pooling, self.lse_r)
        self._init_weights()

    @property
    def output_stride(self) -> int:
        """Input pixels per pixel of the class map (32, or 8 when dilated)."""
        return 8 if self.dilated else 32

    def config(self) -> dict[str, Any]:
        """Arguments that rebuild this architecture."""
        return {"width": self.width, "in_channels": self.in_channels, "dilated": self.dilated,
                "num_classes": self.num_classes, "batch_norm": self.batch_norm,
                "pooling": self.pooling, "lse_r": self.lse_r, "input_norm": self.input_norm,
                "padding": self.padding}

    def _init_weights(self) -> None:
        for m in self.features.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.classifier.weight, 0.0, 0.01)
        nn.init.zeros_(self.classifier.bias)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] -> network input: ``(x - 0.449) / 0.226`` or ``x / 0.226``
        (``input_norm``)."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected images [B, {self.in_channels}, H, W], got shape {tuple(x.shape)}")
        if self.input_norm == "zero_background":
            return x / GREY_STD
        return (x - GREY_MEAN) / GREY_STD

    def class_map(self, x: torch.Tensor) -> torch.Tensor:
        """The 2-channel class map before pooling, [B, 2, H / stride, W / stride]."""
        return self.classifier(self.features(self.normalise(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (background, brain) of images ``x`` [B, C, H, W] in [0, 1] -> [B, 2]."""
        return self.pool(self.class_map(x)).flatten(1)


def vgg16_classifier(width: float = 1.0, in_channels: int = 1, dilated: bool = False,
                     pretrained: bool | str | os.PathLike = False, batch_norm: bool = False,
                     pooling: str = "avg", lse_r: float = 5.0, input_norm: str = "imagenet",
                     padding: str = "zeros") -> VGGClassifier:
    """Build the slice classifier (see module docstring).

    Parameters
    ----------
    width : float
        Channel multiplier; 1.0 is VGG-16 (``features.*`` names and shapes equal torchvision's).
    in_channels : int
        Input channels; ImageNet's RGB first layer is summed (1 channel) or averaged and
        repeated (other counts) when loading.
    dilated : bool
        The authors' output-stride-8 fifth block.
    pretrained : bool or path
        ``False``: random initialisation. ``True``: torchvision's ImageNet VGG-16 weights from
        torch's hub cache (downloaded when missing; a clear ``RuntimeError`` when that fails).
        A path: a local weights file (torchvision's ``vgg16-397923af.pth`` or any state dict
        with ``features.*`` keys). Needs ``width=1`` and ``batch_norm=False``.
    batch_norm : bool
        Batch normalisation after every convolution (see :class:`VGGClassifier`); module
        names and the ``features.N.weight`` / ``bias`` shapes stay those of VGG-16.
    pooling, lse_r, input_norm, padding
        Global pooling, input normalisation and convolution padding (see :class:`VGGClassifier`).

    Returns
    -------
    VGGClassifier
        ``model(images [B, in_channels, H, W] in [0, 1]) -> logits [B, 2]``.
    """
    state = None
    if pretrained is not False and pretrained is not None:
        if float(width) != 1.0:
            raise ValueError(f"pretrained weights need width=1.0 (VGG-16's channels), got width={width}")
        if batch_norm:
            raise ValueError("pretrained weights are those of VGG-16 without batch normalisation: "
                             "use batch_norm=false with pretrained")
        state = imagenet_state_dict() if pretrained is True else _read_state_dict(pretrained)
    model = VGGClassifier(width=width, in_channels=in_channels, dilated=dilated, batch_norm=batch_norm,
                          pooling=pooling, lse_r=lse_r, input_norm=input_norm, padding=padding)
    if state is not None:
        load_vgg_features(model, state)
    return model


def imagenet_state_dict() -> dict[str, torch.Tensor]:
    """torchvision's ImageNet VGG-16 state dict, from torch's hub cache or the internet.

    Raises
    ------
    RuntimeError
        When the file is not cached and cannot be downloaded (e.g. no internet), naming the
        two ways to provide it.
    """
    from torchvision.models import VGG16_Weights

    weights = VGG16_Weights.IMAGENET1K_V1
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    try:
        return weights.get_state_dict(progress=False)
    except Exception as exc:  # URLError, OSError, hash mismatch: all mean "no usable weights"
        raise RuntimeError(
            f"classifier.pretrained=True: cannot get torchvision's ImageNet VGG-16 weights "
            f"({type(exc).__name__}: {exc}). Without internet, download {weights.url} elsewhere and "
            f"either put it at {cached} (torch's hub cache) or pass its path, "
            f"classifier.pretrained='path/to/{IMAGENET_FILE}'; or train from scratch with "
            f"classifier.pretrained=false."
        ) from exc


def _read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"classifier.pretrained={str(path)!r}: no such weights file")
    obj = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not any(str(k).startswith("features.") for k in obj):
        raise ValueError(f"{path}: not a VGG state dict (no 'features.*' keys)")
    return obj


def load_vgg_features(model: VGGClassifier, state: dict[str, torch.Tensor]) -> None:
    """Copy torchvision-style ``features.*`` weights into ``model`` (the head keeps its init).

    The first convolution's RGB kernels are summed over the colour axis for a 1-channel
    model (exact for a grey image repeated on RGB, as the normalisation is shared), or
    averaged and repeated for other channel counts.

    Raises
    ------
    ValueError
        When a key is missing or a shape does not match (e.g. a width other than 1).
    """
    own = model.state_dict()
    new = {}
    for key, target in own.items():
        if not key.startswith("features."):
            continue
        if key not in state:
            raise ValueError(f"pretrained weights lack {key!r}")
        value = state[key].detach().to(torch.float32)
        if key == "features.0.weight" and value.shape[1] != target.shape[1]:
            value = _adapt_first_layer(value, target.shape[1])
        if value.shape != target.shape:
            raise ValueError(f"pretrained {key}: shape {tuple(value.shape)} does not fit the "
                             f"model's {tuple(target.shape)}")
        new[key] = value
    model.load_state_dict(new, strict=False)


def _adapt_first_layer(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """[C_out, 3, k, k] RGB kernels -> [C_out, in_channels, k, k]."""
    summed = weight.sum(dim=1, keepdim=True)
    if in_channels == 1:
        return summed
    return (summed / in_channels).repeat(1, in_channels, 1, 1)
