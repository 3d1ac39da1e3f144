"""ZJU-4DRadarCam (RadarCam-Depth, ICRA 2024) folder layout as :class:`Sample` objects (numpy).

Layout (``root`` may be the dataset folder or its ``data/`` folder)::

    data/image/<name>.png       RGB camera image (1280 x 720)
    data/radar/<name>.npy       (N, >=3) radar points: u (column), v (row) in image pixels,
                                depth (m), then optional extra columns
    data/gt/<name>.png          sparse single-scan LiDAR depth, uint16/uint32 PNG = metres * 256
    data/gt_interp/<name>.png   interpolated LiDAR depth, same encoding (optional)
    data/train.txt, val.txt, test.txt   one <name> per line

The radar points are already in pixel space, so they are mapped through the same
:class:`geometry.InputTransform` as the image and re-rasterised with the nearest-wins rule of
:func:`geometry.rasterize_nearest`. Sparse GT is resampled as points, dense GT by nearest
neighbour. The dataset ships no intrinsics: pass ``K`` to get a model-size K, otherwise
``Sample.K`` is all NaN (anything that projects with it then fails loudly).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from xdrcdepth_ros.data.resample import rasterize_pixels, resample_dense, resample_sparse
from xdrcdepth_ros.data.sample import Sample
from xdrcdepth_ros.core.errors import DatasetError
from xdrcdepth_ros.core.geometry import InputTransform
from xdrcdepth_ros.core.model_metadata import DEFAULT_RADAR_FIELDS

SPLITS: tuple[str, ...] = ('train', 'val', 'test', 'full')
DEPTH_PNG_SCALE = 256.0


def read_depth_png(path: str | Path) -> np.ndarray:
    """(H, W) float32 metres from a 16/32-bit depth PNG (value / 256); 0 = no depth."""
    import cv2

    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise DatasetError(f'cannot read depth PNG {path}')
    if raw.ndim != 2 or raw.dtype not in (np.uint16, np.int32, np.uint32):
        raise DatasetError(f'{path}: expected a single-channel 16/32-bit depth PNG, got '
                           f'{raw.dtype} with shape {raw.shape}')
    depth = raw.astype(np.float32) / DEPTH_PNG_SCALE
    depth[depth < 0] = 0.0
    return depth


class ZJU4DRadarCamDataset:
    """One split of ZJU-4DRadarCam at the model size.

    Args:
        root: dataset folder (containing ``data/``) or the ``data/`` folder itself.
        split: ``'train'``, ``'val'``, ``'test'`` or ``'full'`` (the list files).
        height: model input height (multiple of 32).
        width: model input width (multiple of 32).
        K: (3, 3) intrinsics of the 1280 x 720 camera, if known.
        radar_fields: radar map channels after depth. A name found in ``extra_columns`` takes
            that npy column; any other name gives an all-zero channel (the npy files carry
            only u, v, depth), which keeps the default 4-channel model input usable. Zero-filled
            names are listed in ``meta['zero_channels']``.
        extra_columns: names of npy columns after (u, v, depth), if the files have more.
        vertical: crop anchor of :meth:`geometry.InputTransform.fit`.

    Raises:
        DatasetError: the layout or the split file is missing, or the split is empty.
    """

    def __init__(self, root: str | Path, split: str = 'train', height: int = 352,
                 width: int = 640, *, K: np.ndarray | None = None,
                 radar_fields: Sequence[str] = DEFAULT_RADAR_FIELDS,
                 extra_columns: Sequence[str] = (), vertical: str = 'bottom') -> None:
        if split not in SPLITS:
            raise ValueError(f'split must be one of {SPLITS}, got {split!r}')
        InputTransform.fit(1280, 720, width, height, vertical)  # validates size and anchor
        root = Path(root)
        self.data_dir = root / 'data' if (root / 'data').is_dir() else root
        for folder in ('image', 'radar', 'gt'):
            if not (self.data_dir / folder).is_dir():
                raise DatasetError(f'ZJU-4DRadarCam folder {self.data_dir / folder} is missing '
                                   '(expected image/, radar/, gt/ and <split>.txt)')
        list_file = self.data_dir / f'{split}.txt'
        try:
            lines = list_file.read_text().splitlines()
        except OSError as err:
            raise DatasetError(f'missing split file {list_file}') from err
        self.names = [Path(line.strip()).stem for line in lines if line.strip()]
        if not self.names:
            raise DatasetError(f'split file {list_file} lists no samples')
        self.split = split
        self.height, self.width = int(height), int(width)
        self.K = None if K is None else np.asarray(K, dtype=np.float64)
        if self.K is not None and self.K.shape != (3, 3):
            raise ValueError(f'K must be 3x3, got {self.K.shape}')
        self.radar_fields = tuple(radar_fields)
        self.extra_columns = tuple(extra_columns)
        self.vertical = vertical

    def __len__(self) -> int:
        return len(self.names)

    @property
    def radar_channels(self) -> tuple[str, ...]:
        """Names of the radar map channels (depth first)."""
        return ('depth',) + self.radar_fields

    def _image_path(self, name: str) -> Path:
        for suffix in ('.png', '.jpg', '.jpeg'):
            path = self.data_dir / 'image' / f'{name}{suffix}'
            if path.is_file():
                return path
        raise DatasetError(f'no image for {name!r} in {self.data_dir / "image"}')

    def read_radar(self, name: str) -> np.ndarray:
        """(N, 3 + extra) float64 radar points of ``name``: u, v (pixels), depth (m), extras."""
        path = self.data_dir / 'radar' / f'{name}.npy'
        try:
            points = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise DatasetError(f'cannot read radar points {path}: {err}') from err
        points = np.atleast_2d(np.asarray(points, dtype=np.float64))
        if points.size == 0:
            return np.zeros((0, 3 + len(self.extra_columns)))
        if points.shape[1] < 3 + len(self.extra_columns):
            raise DatasetError(f'{path}: expected >= {3 + len(self.extra_columns)} columns '
                               f'(u, v, depth, {", ".join(self.extra_columns)}), got '
                               f'{points.shape[1]}')
        return points

    def __getitem__(self, index: int) -> Sample:
        import cv2

        if not -len(self) <= index < len(self):
            raise IndexError(f'index {index} out of range for {len(self)} samples')
        index %= len(self)
        name = self.names[index]
        path = self._image_path(name)
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise DatasetError(f'cannot read image {path}')
        image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        src_h, src_w = image.shape[:2]
        transform = InputTransform.fit(src_w, src_h, self.width, self.height, self.vertical)
        points = self.read_radar(name)
        zero = [f for f in self.radar_fields if f not in self.extra_columns]
        columns = [points[:, 2]] + [
            points[:, 3 + self.extra_columns.index(f)] if f in self.extra_columns
            else np.zeros(len(points)) for f in self.radar_fields]
        values = np.stack(columns, 1).astype(np.float32)
        radar = rasterize_pixels(points[:, :2], points[:, 2], values, transform)
        gt = read_depth_png(self.data_dir / 'gt' / f'{name}.png')
        if gt.shape != (src_h, src_w):
            raise DatasetError(f'GT of {name!r} is {gt.shape[1]}x{gt.shape[0]}, image is '
                               f'{src_w}x{src_h}')
        dense_path = self.data_dir / 'gt_interp' / f'{name}.png'
        gt_dense = (resample_dense(read_depth_png(dense_path), transform)
                    if dense_path.is_file() else np.zeros((self.height, self.width), np.float32))
        K = (transform.apply_to_K(self.K) if self.K is not None
             else np.full((3, 3), np.nan))
        meta = {'source': 'zju4dradarcam', 'name': name, 'index': index, 'split': self.split,
                'camera_size': (src_w, src_h), 'zero_channels': zero,
                'radar_pixels': points[:, :3].astype(np.float32)}
        return Sample(image=np.ascontiguousarray(transform.apply_to_image(image)), radar=radar,
                      gt_sparse=resample_sparse(gt, transform), gt_dense=gt_dense, K=K,
                      meta=meta, radar_channels=self.radar_channels)
