"""Faces in: 68-point landmarks, video tracks, face crops and landmark images.

``detectors`` (backends), ``track`` (video tracks, gap filling, smoothing), ``crop`` (square crops,
inverse transform, paste-back), ``draw`` (the paper's landmark images). Heavy dependencies (dlib,
face-alignment, mediapipe, OpenCV, scipy, torch) are imported inside the functions that need them.
"""
from __future__ import annotations

from .crop import (FaceCrop, crop_from_landmarks, crop_image, crop_track, face_mask, feather_mask, paste_back,
                   transform_landmarks)
from .detectors import (BACKENDS, MEDIAPIPE_TO_IBUG68, DlibDetector, Face, FaceAlignmentDetector,
                        LandmarkDetector, MediaPipeDetector, detect_landmarks, get_detector, select_face)
from .draw import PARTS, draw_landmarks, landmark_images, line_width
from .track import (LandmarkTrack, OneEuroFilter, fill_gaps, frame_ranges, smooth_track, track_faces,
                    track_video)

__all__ = [
    "BACKENDS", "MEDIAPIPE_TO_IBUG68", "PARTS", "DlibDetector", "Face", "FaceAlignmentDetector", "FaceCrop",
    "LandmarkDetector", "LandmarkTrack", "MediaPipeDetector", "OneEuroFilter", "crop_from_landmarks",
    "crop_image", "crop_track", "detect_landmarks", "face_mask", "draw_landmarks", "feather_mask", "fill_gaps",
    "frame_ranges", "get_detector", "landmark_images", "line_width", "paste_back", "select_face",
    "smooth_track", "track_faces", "track_video", "transform_landmarks",
]
