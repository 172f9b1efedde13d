"""Channel-scoring criteria. Each gives one score per channel; higher = keep.

- Feature-map criteria are computed while streaming images: FEATURE_STATISTICS maps each to its
  per-image statistic, (N, C, H, W) -> (N, C), whose mean over images is the score.
- Model criteria read the network itself: MODEL_CRITERIA maps each to
  (model, channel groups, seed) -> {group name: (C,) scores}.
"""

from prunelab.criteria.chip import channel_independence, channel_independence_per_image
from prunelab.criteria.hrank import channel_rank, channel_rank_per_image
from prunelab.criteria.weights import filter_l1, random_scores

FEATURE_STATISTICS = {"chip": channel_independence_per_image, "hrank": channel_rank_per_image}
MODEL_CRITERIA = {"l1": filter_l1, "random": random_scores}
# Shapley criteria play a game on the network and its data (criteria/snpfi.py): they also choose
# each group's width (for a FLOPs budget) and recover the pruned network without training.
SHAPLEY_CRITERIA = ("snpfi",)
# Criteria whose scores are a draw from the seed: with several fine-tuning seeds, each seed prunes
# its own draw, so the spread over seeds holds the selection as well as the training.
SEED_DRAWN = ("random",)
CRITERIA = (*FEATURE_STATISTICS, *MODEL_CRITERIA, *SHAPLEY_CRITERIA)

__all__ = ["CRITERIA", "SEED_DRAWN", "SHAPLEY_CRITERIA", "FEATURE_STATISTICS", "MODEL_CRITERIA", "channel_independence", "channel_independence_per_image",
           "channel_rank", "channel_rank_per_image", "filter_l1", "random_scores"]
