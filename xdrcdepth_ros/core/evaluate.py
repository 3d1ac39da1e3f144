"""Depth metrics of the radar-camera depth papers (numpy only: no torch, no ROS).

Protocol (CaFNet / LiRCDepth / XD-RCDepth evaluation code, RadarCam-Depth for ZJU-4DRadarCam):

* Metrics are computed **per image** on its valid ground-truth pixels, then **averaged over
  images** (not pooled over all pixels of the data set).
* The prediction is clipped to ``[min_depth, max_depth]`` (``min_depth`` defaults to 1e-3 m, as in
  the reference code). ``+inf`` becomes ``max_depth``; ``-inf`` and **NaN become ``min_depth``**,
  so a pixel the model declared invalid still counts as a (bad) prediction wherever there is GT;
  it is never silently skipped.
* A GT pixel is valid when ``min_depth < gt < max_depth`` (strictly below the cap, exactly as the
  reference ``online_eval`` does). Ground truth uses 0 for "no measurement"; NaN and inf GT are
  invalid too.
* Depth caps: 50, 70 and 80 m (``max_depth``); 80 m is the headline number.
* Units: depths in metres; the papers report MAE / RMSE in millimetres and iMAE / iRMSE in 1/km.
  :func:`compute_metrics` returns SI-based keys whose names carry the unit; :func:`format_table`
  converts to the papers' units.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

#: Depth caps of the papers' tables, metres.
DEFAULT_CAPS: tuple[float, ...] = (50.0, 70.0, 80.0)

#: Keys of one image's metrics, in table order. ``n_pixels`` is the number of valid GT pixels.
METRIC_KEYS: tuple[str, ...] = (
    'mae_m', 'rmse_m', 'imae_per_km', 'irmse_per_km', 'abs_rel', 'sq_rel',
    'delta1', 'delta2', 'delta3')


def _check_pair(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred)
    gt = np.asarray(gt)
    if pred.ndim == 3 and pred.shape[0] == 1:
        pred = pred[0]
    if gt.ndim == 3 and gt.shape[0] == 1:
        gt = gt[0]
    if pred.ndim != 2 or gt.ndim != 2:
        raise ValueError(f'pred and gt must be (H, W) depth maps, got shapes {pred.shape} and '
                         f'{gt.shape}')
    if pred.shape != gt.shape:
        raise ValueError(f'pred {pred.shape} and gt {gt.shape} must have the same shape; map the '
                         'prediction to the GT resolution first')
    return pred, gt


def valid_mask(gt: np.ndarray, max_depth: float = 80.0, min_depth: float = 1e-3) -> np.ndarray:
    """Boolean (H, W) mask of evaluated GT pixels: ``min_depth < gt < max_depth``, NaN out."""
    gt = np.asarray(gt)
    with np.errstate(invalid='ignore'):
        return (gt > min_depth) & (gt < max_depth)


def clip_prediction(pred: np.ndarray, max_depth: float = 80.0,
                    min_depth: float = 1e-3) -> np.ndarray:
    """Clip a prediction to ``[min_depth, max_depth]`` (float64); NaN, -inf -> min; +inf -> max."""
    out = np.asarray(pred, dtype=np.float64).copy()
    out[np.isnan(out)] = min_depth
    return np.clip(out, min_depth, max_depth)


def compute_metrics(pred: np.ndarray, gt: np.ndarray, max_depth: float = 80.0,
                    min_depth: float = 1e-3) -> dict[str, float] | None:
    """Metrics of one image.

    Args:
        pred: (H, W) predicted depth, metres (NaN / inf allowed: see the module docstring).
            A leading singleton channel (1, H, W) is accepted.
        gt: (H, W) ground-truth depth, metres; 0 (or NaN) means no measurement.
        max_depth: evaluation cap, metres; GT at or beyond it is ignored and the prediction is
            clipped to it.
        min_depth: GT must exceed this (m); the prediction is clipped up to it.

    Returns:
        ``None`` when the image has no valid GT pixel, else a dict with ``mae_m``, ``rmse_m``
        (metres), ``imae_per_km``, ``irmse_per_km`` (1/km), ``abs_rel``, ``sq_rel`` (sq_rel in
        metres, as in the reference code: mean((p - g)^2 / g)), ``delta1..3`` (fraction of pixels
        with max(p/g, g/p) < 1.25^k) and ``n_pixels`` (int count of valid pixels).

    Raises:
        ValueError: shapes differ or are not 2-D; ``max_depth <= min_depth``.
    """
    if not max_depth > min_depth > 0:
        raise ValueError(f'need max_depth > min_depth > 0, got max_depth={max_depth}, '
                         f'min_depth={min_depth}')
    pred, gt = _check_pair(pred, gt)
    mask = valid_mask(gt, max_depth, min_depth)
    count = int(mask.sum())
    if count == 0:
        return None
    g = gt[mask].astype(np.float64)
    p = clip_prediction(pred[mask], max_depth, min_depth)
    err = p - g
    inv_err = 1.0 / p - 1.0 / g
    ratio = np.maximum(p / g, g / p)
    return {
        'mae_m': float(np.mean(np.abs(err))),
        'rmse_m': float(np.sqrt(np.mean(err ** 2))),
        'imae_per_km': float(np.mean(np.abs(inv_err)) * 1000.0),
        'irmse_per_km': float(np.sqrt(np.mean(inv_err ** 2)) * 1000.0),
        'abs_rel': float(np.mean(np.abs(err) / g)),
        'sq_rel': float(np.mean(err ** 2 / g)),
        'delta1': float(np.mean(ratio < 1.25)),
        'delta2': float(np.mean(ratio < 1.25 ** 2)),
        'delta3': float(np.mean(ratio < 1.25 ** 3)),
        'n_pixels': count,
    }


class MetricAccumulator:
    """Per-image metrics at several depth caps, averaged over images.

    Images with no valid GT pixel under a cap are skipped for that cap and counted in
    ``n_skipped`` (they would otherwise divide by zero or bias the mean).

    Args:
        caps: evaluation caps in metres (default 50, 70, 80).
        min_depth: lower GT bound and prediction floor, metres.
    """

    def __init__(self, caps: Iterable[float] = DEFAULT_CAPS, min_depth: float = 1e-3) -> None:
        self.caps = tuple(caps)
        if not self.caps:
            raise ValueError('caps must name at least one evaluation range')
        for cap in self.caps:
            if not cap > min_depth > 0:
                raise ValueError(f'every cap must exceed min_depth={min_depth} > 0, got {cap}')
        self.min_depth = float(min_depth)
        self._rows: dict[float, list[dict[str, float]]] = {cap: [] for cap in self.caps}
        self._skipped: dict[float, int] = {cap: 0 for cap in self.caps}

    def add(self, pred: np.ndarray, gt: np.ndarray) -> dict[float, dict[str, float] | None]:
        """Add one image; returns its metrics per cap (``None`` where it had no valid GT).

        Args:
            pred: (H, W) predicted depth, metres.
            gt: (H, W) ground truth, metres, 0 = none.
        """
        result: dict[float, dict[str, float] | None] = {}
        for cap in self.caps:
            metrics = compute_metrics(pred, gt, max_depth=cap, min_depth=self.min_depth)
            if metrics is None:
                self._skipped[cap] += 1
            else:
                self._rows[cap].append(metrics)
            result[cap] = metrics
        return result

    def __len__(self) -> int:
        """Number of images added (evaluated or skipped)."""
        cap = self.caps[0]
        return len(self._rows[cap]) + self._skipped[cap]

    def summary(self) -> dict[float, dict[str, float]]:
        """Mean of each metric over evaluated images, per cap.

        Returns:
            ``{cap: {metric: mean, ..., 'n_images': evaluated images, 'n_skipped': images
            without valid GT, 'n_pixels': total valid pixels}}``. Means are NaN for a cap with no
            evaluated image.
        """
        out: dict[float, dict[str, float]] = {}
        for cap in self.caps:
            rows = self._rows[cap]
            entry: dict[str, float] = {}
            for key in METRIC_KEYS:
                entry[key] = float(np.mean([row[key] for row in rows])) if rows else float('nan')
            entry['n_images'] = len(rows)
            entry['n_skipped'] = self._skipped[cap]
            entry['n_pixels'] = int(sum(row['n_pixels'] for row in rows))
            out[cap] = entry
        return out


_TABLE_COLUMNS: tuple[tuple[str, str, float, str], ...] = (
    # (header, key, scale, format)
    ('MAE[mm]', 'mae_m', 1000.0, '{:.1f}'),
    ('RMSE[mm]', 'rmse_m', 1000.0, '{:.1f}'),
    ('iMAE[1/km]', 'imae_per_km', 1.0, '{:.2f}'),
    ('iRMSE[1/km]', 'irmse_per_km', 1.0, '{:.2f}'),
    ('AbsRel', 'abs_rel', 1.0, '{:.4f}'),
    ('SqRel', 'sq_rel', 1.0, '{:.4f}'),
    ('d<1.25', 'delta1', 1.0, '{:.4f}'),
    ('d<1.25^2', 'delta2', 1.0, '{:.4f}'),
    ('d<1.25^3', 'delta3', 1.0, '{:.4f}'),
)


def format_table(summary: dict[float, dict[str, float]]) -> str:
    """Render :meth:`MetricAccumulator.summary` as a plain-text table in the papers' units.

    MAE / RMSE in millimetres, iMAE / iRMSE in 1/km, one row per cap ("0-80m"). A cap with no
    evaluated image shows ``n/a``.
    """
    headers = ['range'] + [column[0] for column in _TABLE_COLUMNS] + ['images', 'skipped']
    rows = []
    for cap, entry in summary.items():
        row = [f'0-{cap:g}m']
        for _, key, scale, fmt in _TABLE_COLUMNS:
            value = entry.get(key, float('nan'))
            row.append('n/a' if not np.isfinite(value) else fmt.format(value * scale))
        row.append(str(int(entry.get('n_images', 0))))
        row.append(str(int(entry.get('n_skipped', 0))))
        rows.append(row)
    widths = [max(len(headers[i]), *(len(row[i]) for row in rows)) if rows else len(headers[i])
              for i in range(len(headers))]
    lines = ['  '.join(h.rjust(w) for h, w in zip(headers, widths))]
    lines += ['  '.join(cell.rjust(w) for cell, w in zip(row, widths)) for row in rows]
    return '\n'.join(lines)
