"""Output heads that give a distribution over age bins (SFCN: 40 log-softmax bins of 1 y, 42-82 y).

Why: such a head says more than one number. The expected age is Σ p·centre (the published
formula); the SD of that distribution is the model's own uncertainty; and an age near the bins'
ends is biased toward the middle (no mass can lie beyond the last bin), which the user must be told.
The head is described in the card as ``output["head"]``:
``{"kind": "bins", "activation": "log_softmax", "start": 42, "width": 1, "count": 40}``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import CheckpointError

#: An age within this many bin widths of either end of the bins gets a warning.
EDGE_MARGIN_BINS = 3
#: ... as does a distribution with at least this much probability in its first or last bin.
EDGE_MASS = 0.1


@dataclass(frozen=True)
class BinHead:
    start: float
    width: float
    count: int
    activation: str = "log_softmax"

    @property
    def end(self) -> float:
        return self.start + self.width * self.count

    @property
    def centres(self) -> np.ndarray:
        return self.start + self.width / 2 + self.width * np.arange(self.count, dtype=float)

    def to_dict(self) -> dict:
        return {"kind": "bins", "activation": self.activation, "start": self.start, "width": self.width,
                "count": self.count, "age": "sum(p * bin centre)", "uncertainty": "SD of p over the bin centres"}


def head_of(card) -> BinHead | None:
    """The card's bin head, or None for a model that outputs one age."""
    head = (getattr(card, "output", None) or {}).get("head")
    if not head:
        return None
    if not isinstance(head, dict) or head.get("kind") != "bins":
        raise CheckpointError("model card: output.head must be {'kind': 'bins', 'start', 'width', 'count'}")
    try:
        out = BinHead(float(head["start"]), float(head["width"]), int(head["count"]), str(head.get("activation", "log_softmax")))
    except (KeyError, TypeError, ValueError):
        raise CheckpointError("model card: output.head needs numbers start, width and count") from None
    if not (out.width > 0 and out.count > 1 and np.isfinite(out.start)):
        raise CheckpointError("model card: output.head needs width > 0 and count > 1")
    if out.activation not in ("log_softmax", "softmax"):
        raise CheckpointError("model card: output.head activation must be log_softmax or softmax")
    return out


def check_head(card) -> None:
    """A bin head must agree with the architecture's own bins (SFCN: ``age_range``, ``output_dim``)."""
    head = head_of(card)
    if head is None or card.architecture != "sfcn":
        return
    kw = card.architecture_kwargs or {}
    lo, hi = kw.get("age_range", (42.0, 82.0))
    count = int(kw.get("output_dim", 40))
    if count != head.count or not np.isclose(lo, head.start) or not np.isclose(hi, head.end):
        raise CheckpointError(f"model card: output.head bins {head.start:g}-{head.end:g} y x {head.count} do not match "
                              f"the architecture's {lo:g}-{hi:g} y x {count}")


def distribution(head: BinHead, outputs) -> tuple[float, float, np.ndarray]:
    """(expected age Σ p·centre, SD of the distribution, p) from the head's raw outputs (one sample)."""
    raw = np.asarray(outputs, dtype=np.float64).reshape(-1)
    if raw.size != head.count:
        raise CheckpointError(f"the model gives {raw.size} outputs, its card's head has {head.count} bins")
    p = np.exp(raw) if head.activation == "log_softmax" else raw
    p = p / p.sum()
    c = head.centres
    age = float(p @ c)
    return age, float(np.sqrt(max(0.0, p @ (c - age) ** 2))), p


def edge_warning(head: BinHead, age: float, p: np.ndarray) -> str | None:
    """A warning when the age is near the bins' ends (it cannot go beyond them: biased to the middle)."""
    margin = EDGE_MARGIN_BINS * head.width
    near = age < head.start + margin or age > head.end - margin
    heavy = p[0] >= EDGE_MASS or p[-1] >= EDGE_MASS
    if not (near or heavy):
        return None
    return (f"brain age {age:.1f} is near the end of the model's output bins ({head.start:g}-{head.end:g} y): "
            "ages beyond them cannot be predicted, so it is biased toward the middle")
