"""Channel-scoring criteria. Each gives one score per channel; higher = keep.

Feature-map criteria are computed while streaming images: FEATURE_STATISTICS maps a criterion to
its per-image statistic, (N, C, H, W) -> (N, C), whose mean over images is the score.
"""

from prunelab.criteria.chip import channel_independence, channel_independence_per_image

CRITERIA = ("chip",)
FEATURE_STATISTICS = {"chip": channel_independence_per_image}

__all__ = ["CRITERIA", "FEATURE_STATISTICS", "channel_independence", "channel_independence_per_image"]
