"""A hard-pair soft-margin loss, written the way pytorch-metric-learning writes its losses.

For each anchor of the batch: the hardest positive (least similar same-class embedding) and the hardest negative
(most similar other-class embedding), penalised by softplus(scale * (s_neg - s_pos + margin)) / scale -- a smooth
version of the batch-hard triplet loss (Hermans et al., 2017) on cosine similarities.
"""

import torch
from pytorch_metric_learning.distances import CosineSimilarity
from pytorch_metric_learning.losses import BaseMetricLossFunction
from pytorch_metric_learning.utils import common_functions as c_f
from pytorch_metric_learning.utils import loss_and_miner_utils as lmu


class HardPairSoftMarginLoss(BaseMetricLossFunction):
    def __init__(self, margin=0.1, scale=16.0, **kwargs):
        super().__init__(distance=CosineSimilarity(), **kwargs)
        self.margin = margin
        self.scale = scale

    def compute_loss(self, embeddings, labels, indices_tuple, ref_emb, ref_labels):
        c_f.labels_or_indices_tuple_required(labels, indices_tuple)
        similarities = self.distance(embeddings, ref_emb)
        a1, p, a2, n = lmu.get_all_pairs_indices(labels, ref_labels)
        if len(a1) == 0 or len(a2) == 0:
            return self.zero_losses()
        positives = torch.full_like(similarities, float("inf"))
        positives[a1, p] = similarities[a1, p]
        negatives = torch.full_like(similarities, float("-inf"))
        negatives[a2, n] = similarities[a2, n]
        hardest_positive = positives.min(dim=1).values
        hardest_negative = negatives.max(dim=1).values
        # Anchors without a positive or without a negative in the batch have nothing to compare.
        valid = torch.isfinite(hardest_positive) & torch.isfinite(hardest_negative)
        gap = hardest_negative[valid] - hardest_positive[valid] + self.margin
        losses = torch.nn.functional.softplus(self.scale * gap) / self.scale
        anchors = torch.arange(len(embeddings), device=embeddings.device)[valid]
        return {"loss": {"losses": losses, "indices": anchors, "reduction_type": "element"}}


# What `benchmark --loss-module my_loss.py` reads; an installed package names its losses as entry points instead.
LOSSES = {"my_loss": HardPairSoftMarginLoss}
