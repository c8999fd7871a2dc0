"""TrainConfig: every knob of one training run, as one flat dataclass (the search tunes its fields)."""
from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass, field

from .augment import AugmentConfig
from .validation import check_field
from .weights import check_weights_source


# Fields of earlier versions and the field that holds the concept now (a space or flag that
# names one is refused with this; config.json files written then are upgraded on reading).
RENAMED_FIELDS = {"amp": "precision (auto: bf16 on CUDA; fp32: never)",
                  "cpu_bf16": "precision (bf16: bf16 on the CPU too)"}


def upgrade_fields(values: dict) -> dict:
    """``values`` with earlier fields replaced by today's: amp + cpu_bf16 -> precision."""
    if not any(k in values for k in RENAMED_FIELDS):
        return values
    values = dict(values)
    amp, cpu_bf16 = values.pop("amp", True), values.pop("cpu_bf16", False)
    values.setdefault("precision", "bf16" if cpu_bf16 else "auto" if amp else "fp32")
    return values


@dataclass
class TrainConfig:
    """One training run. Field names are the keys of a search space's ``params``.

    Example:
        >>> cfg = TrainConfig.from_dict({"backbone": "resnet18", "lr": 3e-4})
        >>> cfg.backbone, cfg.lr
        ('resnet18', 0.0003)
    """

    # model
    backbone: str = "resnet18"
    input_size: int = 48
    in_chans: int = 1              # 1: grayscale; 3: grey replicated, as the seed study did
    dropout: float = 0.0
    drop_path: float = 0.0
    head_hidden: int = 0           # >0: the seed's pool -> dropout -> Dense(hidden) -> Dense(7) head
    pre_logits: bool = True        # False: no VGG fc6/fc7 (4096-wide), as Keras' include_top=False
    stem_pool: bool = True         # False: drop a ResNet's max-pool after the stem (2x the map
                                   # side in every stage, ~3x the compute, at 48 px 3x3 at the end)
    pretrained: bool = False       # timm's ImageNet weights, from the Hugging Face cache
    pretrained_file: str | None = None  # or weights from a file, or a results model/ folder
    # optimisation
    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "adamw"       # any timm optimizer: adamw, sgd (Nesterov), adam, lamb, ...
    lr: float = 1e-3
    weight_decay: float = 0.05
    layer_decay: float = 0.0       # >0: lr x layer_decay**depth-from-the-top (timm); 0: off
    head_warmup_epochs: int = 0    # train only the classifier for this many epochs first
    momentum: float = 0.9
    scheduler: str = "cosine"      # a name in fer_models.schedulers.SCHEDULES
    warmup_epochs: float = 0.0
    min_lr: float = 1e-6
    plateau_factor: float = 0.1
    plateau_patience: int = 3
    early_stop_patience: int = 0   # >0: stop when val loss stalls this many epochs, restore best
    keep_best: bool = False        # return the best PublicTest epoch's weights, not the last's
                                   # (long retrains overfit late); needs a validation split
    label_smoothing: float = 0.0
    grad_clip: float = 0.0         # max grad norm; 0 = off
    ema_decay: float = 0.0         # >0: timm ModelEmaV3 of the weights (warm-up on); kept if better
    # batch mixing (timm Mixup, soft-target loss); both alphas > 0: one or the other per batch
    mixup_alpha: float = 0.0       # >0: mixup with lam ~ Beta(alpha, alpha)
    cutmix_alpha: float = 0.0      # >0: cutmix with lam ~ Beta(alpha, alpha)
    mixup_prob: float = 1.0        # share of batches mixed
    # augmentation (see AugmentConfig)
    hflip: float = 0.5
    translate: float = 0.1
    rotate: float = 10.0
    scale: float = 0.1
    erase_prob: float = 0.0
    erase_max_area: float = 0.25
    crop: int = 0                  # random crop side (px of 48) in training; centre / ten crops in eval
    # runtime
    seed: int = 0
    device: str = "auto"           # auto: cuda when available
    threads: int = 0               # torch intra-op threads; 0 = torch's default
    channels_last: bool = True     # NHWC on CUDA and CPU (CPU: resnet10t, InceptionV3 ~12% faster)
    precision: str = "auto"        # bf16 autocast in training: auto = on CUDA only; bf16 = on CUDA
                                   # and on CPUs with avx512_bf16 or AMX (~1.7x for resnet10t; fp32
                                   # on CPUs without them); fp32 = never. CPU evaluation is fp32
    small_map_convs: bool = True   # CPU: convs with an output map <= 3x3 run as one matmul, 2-6x
                                   # faster there than oneDNN's conv (bench/README.md, bench_speed.py)
    fused_optimizer: bool = True   # torch's fused AdamW / Adam / SGD kernel where timm's choice has one
    eval_batch_size: int = 128     # 1-thread CPU evaluation is fastest near 128 (vs 512: 1.2x)
    train_on_public: bool = False  # retrain on Training + PublicTest (no validation left)
    extra: dict = field(default_factory=dict, repr=False)  # free-form labels carried to results

    def __post_init__(self):
        # Every way of making a config (a space, the CLI, a results folder, code) is checked by
        # the same per-field rules (fer_models.validation): ConfigError names the field.
        for f in dataclasses.fields(self):
            check_field(f.name, getattr(self, f.name))
        check_weights_source(self.pretrained, self.pretrained_file)
        if not isinstance(self.extra, dict):
            raise TypeError(f"extra: must be a mapping, got {type(self.extra).__name__}")

    @property
    def augment(self) -> AugmentConfig:
        return AugmentConfig(hflip=self.hflip, translate=self.translate, rotate=self.rotate,
                             scale=self.scale, erase_prob=self.erase_prob,
                             erase_max_area=self.erase_max_area, crop=self.crop)

    def architecture(self) -> dict:
        """The network this config trains, as :func:`fer_models.models.create_model`'s keyword
        arguments (besides the backbone; weights are the caller's business)."""
        return dict(input_size=self.input_size, in_chans=self.in_chans, dropout=self.dropout,
                    drop_path=self.drop_path, head_hidden=self.head_hidden,
                    pre_logits=self.pre_logits, stem_pool=self.stem_pool)

    @property
    def mixes(self) -> bool:
        return (self.mixup_alpha > 0 or self.cutmix_alpha > 0) and self.mixup_prob > 0

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        """Build from a mapping, refusing unknown keys (a typo must not be silently ignored).
        Fields of earlier versions (``amp``, ``cpu_bf16``) in a results folder's config.json
        are read as the field that replaced them."""
        values = upgrade_fields(values)
        known = set(cls.field_names())
        unknown = sorted(set(values) - known)
        if unknown:
            import difflib

            hints = [f"{k!r} (did you mean {m[0]!r}?)" if (m := difflib.get_close_matches(k, known, 1))
                     else repr(k) for k in unknown]
            raise ValueError(f"unknown training option(s): {', '.join(hints)}")
        types = {f.name: f.type for f in dataclasses.fields(cls)}
        coerced = {}
        for k, v in values.items():
            t = types[k]
            # Optuna and YAML hand over numpy/int values for float fields: normalise the obvious.
            if t == "float" and isinstance(v, (int, float)) and not isinstance(v, bool):
                v = float(v)
            elif t == "int" and not isinstance(v, bool) and (
                    isinstance(v, numbers.Integral)
                    or (isinstance(v, numbers.Real) and float(v).is_integer())):  # not inf or NaN
                v = int(v)
            coerced[k] = v
        return cls(**coerced)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
