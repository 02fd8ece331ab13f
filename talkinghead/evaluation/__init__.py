"""Evaluation: the paper's self-reenactment protocol, a cross-identity variant, baselines and reports.

>>> from talkinghead import load                                            # doctest: +SKIP
>>> from talkinghead.evaluation import EvalOptions, evaluate, write_report  # doctest: +SKIP
>>> result = evaluate(load("default"), ["clip.mp4"], EvalOptions(shots=(1, 8), frames=16))  # doctest: +SKIP
>>> write_report(result, "report/")                                         # doctest: +SKIP

Metrics come from :mod:`talkinghead.metrics`, each reported with its backbone.
"""
from __future__ import annotations

from .baselines import edge_points, nearest_shot, piecewise_affine_warp
from .protocol import (BASELINES, MODES, Clip, EvalOptions, EvalResult, FrameSplit, evaluate, load_clip,
                       split_frames)
from .report import markdown, write_report

__all__ = ["BASELINES", "MODES", "Clip", "EvalOptions", "EvalResult", "FrameSplit", "edge_points", "evaluate",
           "load_clip", "markdown", "nearest_shot", "piecewise_affine_warp", "split_frames", "write_report"]
