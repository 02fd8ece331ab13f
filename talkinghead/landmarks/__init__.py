"""Faces in: 68-point landmarks, video tracks, face crops and landmark images.

``detectors`` (backends), ``track`` (video tracks, gap filling, smoothing), ``crop`` (square crops,
inverse transform, paste-back), ``draw`` (the paper's landmark images). Heavy dependencies (dlib,
face-alignment, mediapipe, OpenCV, torch) are imported inside the functions that need them.
"""
from __future__ import annotations

from .detectors import (BACKENDS, MEDIAPIPE_TO_IBUG68, DlibDetector, Face, FaceAlignmentDetector,
                        LandmarkDetector, MediaPipeDetector, detect_landmarks, get_detector, select_face)
