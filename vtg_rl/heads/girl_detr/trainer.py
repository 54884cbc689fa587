"""Supervised GIRL-DETR training: the recipe's options (architecture, matcher costs, loss weights) and the
trainer whose loss is DETR set prediction (:class:`~vtg_rl.heads.girl_detr.losses.DetrGroundingLoss`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from vtg_rl.heads.girl_detr.losses import DetrGroundingLoss
from vtg_rl.heads.girl_detr.model import GirlDetrArchitecture
from vtg_rl.heads.trainer import HeadTrainer, HeadTrainingConfig


@dataclass
class GirlDetrTrainingConfig(GirlDetrArchitecture, HeadTrainingConfig):
    """Supervised GIRL-DETR: the architecture (:class:`GirlDetrArchitecture`), matcher costs and loss weights."""

    cost_class: float = 4.0
    cost_l1: float = 10.0
    cost_giou: float = 1.0
    loss_span_l1: float = 10.0
    loss_span_giou: float = 1.0
    loss_label: float = 4.0
    loss_background_weight: float = 0.1
    loss_iou: float = 1.0
    loss_saliency: float = 1.0
    loss_saliency_margin: float = 0.2
    loss_aux: bool = True


class GirlDetrTrainer(HeadTrainer):
    """Supervised set-prediction training (Hungarian matching, span / label / IoU / saliency losses)."""

    def __init__(self, *args, criterion: Optional[DetrGroundingLoss] = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.criterion = criterion or DetrGroundingLoss()

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(**inputs["model_inputs"])
        loss, parts = self.criterion(outputs, inputs["targets"], inputs.get("saliency_targets"))
        self._record({f"loss/{k}": v for k, v in parts.items() if not re.search(r"_\d+$", k)})  # skip aux layers
        return (loss, outputs) if return_outputs else loss
