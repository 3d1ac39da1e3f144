"""From an assembled :class:`Frame` to metric depth: preprocess → engine → postprocess.

ROS-free and torch-free: the node and the offline replay both call :meth:`DepthPipeline.run`, and
the training datasets build radar maps with the same :func:`geometry.radar_map`, so the network
sees identical inputs in all three places.

Preprocess: resize + crop the camera image to the model size (``InputTransform``, cached per
camera size), scale K to match, and rasterise every radar sweep into one C x H x W radar map.
Postprocess: depth outside ``(min_depth, max_depth]`` becomes NaN (REP 118 "invalid"), and with
``output_size='camera'`` depth and saliency are mapped back to the camera image (NaN outside the
crop) with the camera's own K.
"""
from __future__ import annotations

from dataclasses import dataclass
import enum
import time
from typing import Mapping, Protocol, Sequence, TYPE_CHECKING

import numpy as np

from xdrcdepth_ros.core.frame import Frame
from xdrcdepth_ros.core.geometry import (check_intrinsics, check_transform, DEFAULT_RADAR_CHANNELS,
                                         InputTransform, radar_map, RadarChannel)

if TYPE_CHECKING:
    from xdrcdepth_ros.core.engine import ModelMetadata

STAGES = ('preprocess', 'engine', 'postprocess')


class OutputSize(str, enum.Enum):
    """Size of the depth image a pipeline returns."""

    MODEL = 'model'
    """The model input size (crop of the resized camera image); K is updated to match."""
    CAMERA = 'camera'
    """The camera image size; pixels outside the model's crop are NaN; K is the camera's."""


class InferenceEngine(Protocol):
    """What the pipeline needs from :class:`engine.Engine` (tests may pass a lookalike)."""

    @property
    def metadata(self) -> ModelMetadata:
        """Model metadata: input size, radar channels, max depth."""

    def run(self, image: np.ndarray,
            radar: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(H, W, 3) uint8 + (C, H, W) float32 → (H, W) depth m, (H, W) saliency or None."""


@dataclass(frozen=True)
class DepthResult:
    """One frame's depth.

    Attributes:
        depth: (h, w) float32 metres along the optical axis; NaN where invalid.
        saliency: (h, w) float32 in [0, 1] (Grad-CAM), or None if the model has none.
        K: (3, 3) float64 intrinsics of ``depth`` (model-size K or the camera's K).
        radar_map: (C, H, W) float32 radar map fed to the model (model size).
        image: (H, W, 3) uint8 RGB fed to the model (model size).
        timings_ms: wall time of 'preprocess', 'engine', 'postprocess' in milliseconds.
        stamp_ns: the frame's image stamp, nanoseconds.
        frame_id: the camera optical frame id.
    """

    depth: np.ndarray
    saliency: np.ndarray | None
    K: np.ndarray
    radar_map: np.ndarray
    image: np.ndarray
    timings_ms: Mapping[str, float]
    stamp_ns: int
    frame_id: str


def build_radar_map(frame: Frame, K_model: np.ndarray, width: int, height: int,
                    channels: Sequence[RadarChannel | str] = DEFAULT_RADAR_CHANNELS, *,
                    min_depth: float = 1.0) -> np.ndarray:
    """Rasterise all of a frame's radar sweeps into one model-size radar map.

    Each sweep's points are moved into the camera frame with its ``T_cam_from_radar``; the
    union is then rasterised once by :func:`geometry.radar_map` with an identity transform, so
    the nearest point wins a pixel across sweeps exactly as within one. For a single sweep the
    result is bit-identical to ``radar_map(points, features, T_cam_from_radar, K_model, ...)``.

    Args:
        frame: the frame; each sweep's features are (N, C - 1) in ``channels[1:]`` order.
        K_model: (3, 3) intrinsics of the model-size image.
        width: model input width, pixels.
        height: model input height, pixels.
        channels: radar map channels, depth first.
        min_depth: minimum camera-frame depth of a point, metres.

    Returns:
        (C, H, W) float32; channel 0 depth in metres, zeros where empty.

    Raises:
        ValueError: a sweep's points/features/transform have the wrong shape.
    """
    channels = tuple(RadarChannel(getattr(c, 'value', c)) for c in channels)
    if not channels or channels[0] is not RadarChannel.DEPTH:
        names = [c.value for c in channels]
        raise ValueError(f'radar channels must start with depth, got {names}')
    features_per_point = len(channels) - 1
    points, features = [], []
    for index, sweep in enumerate(frame.radar):
        name = sweep.frame_id or f'#{index}'
        xyz = np.asarray(sweep.points, dtype=np.float64)
        feats = np.asarray(sweep.features, dtype=np.float32)
        if xyz.ndim != 2 or xyz.shape[1] < 3:
            raise ValueError(f'radar sweep {name}: points must be (N, 3), got {xyz.shape}')
        if feats.shape != (len(xyz), features_per_point):
            raise ValueError(f'radar sweep {name}: features must be ({len(xyz)}, '
                             f'{features_per_point}) for channels '
                             f'{[c.value for c in channels[1:]]}, got {feats.shape}')
        transform = check_transform(sweep.T_cam_from_radar, f'radar sweep {name} T_cam_from_radar')
        # Same arithmetic as geometry.project_points, so one sweep stays bit-identical.
        points.append(xyz[:, :3] @ transform[:3, :3].T + transform[:3, 3])
        features.append(feats)
    if not points:
        return np.zeros((len(channels), int(height), int(width)), dtype=np.float32)
    return radar_map(np.concatenate(points), np.concatenate(features), np.eye(4), K_model,
                     width, height, min_depth)


class DepthPipeline:
    """Runs frames through an engine: preprocess → engine → postprocess, with timings.

    Args:
        engine: a loaded :class:`engine.Engine` (or anything with ``metadata`` and ``run``).
        output_size: ``'model'`` (default) or ``'camera'`` (see :class:`OutputSize`).
        vertical_crop: which rows to keep when the camera aspect is taller than the model's:
            ``'bottom'`` (drop sky), ``'center'`` or ``'top'``; None (default) = the model
            metadata's ``vertical_crop`` (``'bottom'`` unless the model states otherwise).
        min_depth: predicted depth at or below this is NaN, metres.
        radar_min_depth: radar points nearer than this (camera z) are ignored, metres.
    """

    def __init__(self, engine: InferenceEngine, *, output_size: OutputSize | str = 'model',
                 vertical_crop: str | None = None, min_depth: float = 0.1,
                 radar_min_depth: float = 1.0) -> None:
        self.engine = engine
        meta = engine.metadata
        self.output_size = OutputSize(output_size)
        if vertical_crop is None:
            vertical_crop = str(getattr(meta, 'vertical_crop', 'bottom'))
        if vertical_crop not in ('bottom', 'center', 'top'):
            raise ValueError(f"vertical_crop must be 'bottom', 'center' or 'top', got "
                             f'{vertical_crop!r}')
        if not 0 <= min_depth < meta.max_depth:
            raise ValueError(f'min_depth must be in [0, max_depth={meta.max_depth}) m, got '
                             f'{min_depth}')
        self.vertical_crop = vertical_crop
        self.min_depth = float(min_depth)
        self.max_depth = float(meta.max_depth)
        self.radar_min_depth = float(radar_min_depth)
        self.height = int(meta.input_height)
        self.width = int(meta.input_width)
        self.channels = tuple(RadarChannel(name) for name in meta.radar_channels)
        self._transforms: dict[tuple[int, int], InputTransform] = {}

    def transform_for(self, width: int, height: int) -> InputTransform:
        """The (cached) camera → model input transform for a ``width`` x ``height`` camera."""
        key = (int(width), int(height))
        if key not in self._transforms:
            self._transforms[key] = InputTransform.fit(key[0], key[1], self.width, self.height,
                                                       vertical=self.vertical_crop)
        return self._transforms[key]

    def preprocess(self, frame: Frame) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                InputTransform]:
        """Return (model-size RGB uint8, model-size K (3, 3), radar map (C, H, W), transform).

        Raises:
            ValueError: the image is not (H, W, 3) uint8 or K / a radar sweep is malformed.
        """
        image = np.asarray(frame.image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f'frame image must be (H, W, 3) uint8 RGB, got {image.shape} '
                             f'{image.dtype}')
        transform = self.transform_for(image.shape[1], image.shape[0])
        K_model = transform.apply_to_K(frame.K)
        model_image = np.ascontiguousarray(transform.apply_to_image(image))
        radar = build_radar_map(frame, K_model, self.width, self.height, self.channels,
                                min_depth=self.radar_min_depth)
        return model_image, K_model, radar, transform

    def postprocess(self, depth: np.ndarray, saliency: np.ndarray | None,
                    transform: InputTransform, K_camera: np.ndarray,
                    K_model: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """Mask invalid depth with NaN and map to the output size; returns (depth, saliency, K)."""
        depth = np.asarray(depth, dtype=np.float32)
        # NaN compares false, so a non-finite prediction is masked as well.
        valid = (depth > self.min_depth) & (depth <= self.max_depth)
        depth = np.where(valid, depth, np.float32(np.nan))
        if self.output_size is OutputSize.MODEL:
            return depth, saliency, K_model
        if saliency is not None:
            saliency = transform.depth_to_source(saliency)
        return transform.depth_to_source(depth), saliency, check_intrinsics(K_camera)[:, :3]

    def run(self, frame: Frame) -> DepthResult:
        """Depth for one frame (see :class:`DepthResult`).

        Raises:
            ValueError: malformed frame (image dtype/shape, K, radar sweep shapes).
        """
        start = time.perf_counter_ns()
        image, K_model, radar, transform = self.preprocess(frame)
        after_pre = time.perf_counter_ns()
        depth, saliency = self.engine.run(image, radar)
        after_engine = time.perf_counter_ns()
        depth, saliency, K = self.postprocess(depth, saliency, transform, frame.K, K_model)
        end = time.perf_counter_ns()
        timings = {'preprocess': (after_pre - start) / 1e6,
                   'engine': (after_engine - after_pre) / 1e6,
                   'postprocess': (end - after_engine) / 1e6}
        return DepthResult(depth=depth, saliency=saliency, K=K, radar_map=radar, image=image,
                           timings_ms=timings, stamp_ns=int(frame.stamp_ns),
                           frame_id=frame.frame_id)
