"""Time projection + rasterisation of radar (1,000 points) and LiDAR (35,000 points) at 900x1600.

Usage: .venv/bin/python bench/bench_geometry.py [--repeats 200] [--out docs/bench/geometry.json]
Prints medians in ms; the targets (issue 2) are < 2 ms (radar) and < 15 ms (LiDAR). ``--out``
writes them as JSON (what docs/performance.md quotes).
"""
from __future__ import annotations

import argparse

import numpy as np

from timing import median_ms, write_report  # bench/ is on sys.path when a script runs
from xdrcdepth_ros.core import geometry

WIDTH, HEIGHT = 1600, 900
K = np.array([[1266.4, 0.0, 816.3], [0.0, 1266.4, 491.5], [0.0, 0.0, 1.0]])
# A nuScenes-like radar mount: x forward → camera z, y left → camera -x, z up → camera -y.
T_CAM_FROM_SENSOR = np.array([[0.0, -1.0, 0.0, 0.0], [0.0, 0.0, -1.0, 0.5],
                              [1.0, 0.0, 0.0, -1.5], [0.0, 0.0, 0.0, 1.0]])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--repeats', type=int, default=200)
    parser.add_argument('--out', default=None, help='also write the medians to this JSON')
    args = parser.parse_args()
    rng = np.random.default_rng(0)

    def cloud(count: int, spread: float) -> np.ndarray:
        # Points ahead of the vehicle, within the camera's field of view for the most part.
        forward = rng.uniform(2.0, 100.0, count)
        return np.stack([forward, rng.uniform(-spread, spread, count) * forward,
                         rng.uniform(-0.1, 0.3, count) * forward], axis=1).astype(np.float32)

    radar = cloud(1000, 0.6)
    radar_features = rng.normal(size=(1000, 3)).astype(np.float32)
    lidar = cloud(35000, 1.0)
    radar_ms = median_ms(lambda: geometry.radar_map(
        radar, radar_features, T_CAM_FROM_SENSOR, K, WIDTH, HEIGHT), args.repeats)
    lidar_repeats = max(20, args.repeats // 4)
    lidar_ms = median_ms(lambda: geometry.lidar_depth_map(
        lidar, T_CAM_FROM_SENSOR, K, WIDTH, HEIGHT), lidar_repeats)
    kept = len(geometry.project_points(radar, T_CAM_FROM_SENSOR, K, WIDTH, HEIGHT)[2])
    kept_lidar = len(geometry.project_points(lidar, T_CAM_FROM_SENSOR, K, WIDTH, HEIGHT)[2])
    print(f'radar 1000 pts ({kept} in view) -> 4x900x1600 map: median {radar_ms:.3f} ms '
          f'(target < 2 ms, {2.0 / radar_ms:.1f}x margin)')
    print(f'lidar 35000 pts ({kept_lidar} in view) -> 900x1600 depth: median {lidar_ms:.3f} ms '
          f'(target < 15 ms, {15.0 / lidar_ms:.1f}x margin)')
    write_report(args.out, {
        'command': 'bench/bench_geometry.py', 'width': WIDTH, 'height': HEIGHT,
        'radar_map_ms': {'median': radar_ms, 'points': 1000, 'in_view': kept,
                         'repeats': args.repeats},
        'lidar_depth_ms': {'median': lidar_ms, 'points': 35000, 'in_view': kept_lidar,
                           'repeats': lidar_repeats}})


if __name__ == '__main__':
    main()
