"""Render synthetic driving scenes: a preview panel and the generator's speed and sensor density.

Usage: .venv/bin/python bench/render_synthetic.py [--out docs/images/synthetic_samples.png]
       [--seeds 0 1 2 3] [--repeats 20]

Writes a PNG with one row per scene: camera image | radar returns over the image (colour =
depth) | exact dense depth with the LiDAR-like sparse GT as white dots. Prints the median render
time per sample (wall and CPU) at 352x704 (target <= 50 ms on one core) and at 1600x900, and
the radar / LiDAR densities (targets: ~50-120 radar returns in the camera view, ~3k-5k LiDAR
pixels).
"""
from __future__ import annotations

import argparse
from pathlib import Path
import statistics
import time

import cv2
import numpy as np

from xdrcdepth_ros.core import geometry
from xdrcdepth_ros.data import render_scene, Sample

MAX_DEPTH_M = 80.0


def colorize(depth: np.ndarray) -> np.ndarray:
    """(H, W) metres -> (H, W, 3) BGR turbo colours, black where depth is 0."""
    scaled = (np.clip(depth / MAX_DEPTH_M, 0.0, 1.0) * 255).astype(np.uint8)
    out = cv2.applyColorMap(scaled, cv2.COLORMAP_TURBO)
    out[depth <= 0] = 0
    return out


def panel(sample: Sample) -> np.ndarray:
    """One row: image | radar overlay | dense depth + sparse GT, BGR uint8."""
    image = cv2.cvtColor(sample.image, cv2.COLOR_RGB2BGR)
    overlay = (image * 0.6).astype(np.uint8)
    rows, cols = np.nonzero(sample.radar[0] > 0)
    colours = colorize(sample.radar[0][rows, cols][None])[0]
    for r, c, colour in zip(rows, cols, colours):
        cv2.circle(overlay, (int(c), int(r)), 3, tuple(int(v) for v in colour), -1)
    depth = colorize(sample.gt_dense)
    depth[sample.gt_sparse > 0] = 255
    return np.hstack([image, overlay, depth])


def write_png(path: Path, bgr: np.ndarray) -> None:
    """Write a 256-colour PNG (keeps docs images small); falls back to full colour."""
    try:
        from PIL import Image
    except ImportError:
        cv2.imwrite(str(path), bgr, [cv2.IMWRITE_PNG_COMPRESSION, 9])
        return
    image = Image.fromarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)


def median_ms(seeds: range, **kwargs) -> tuple[float, float]:
    """Median (wall, CPU) time to render one sample, milliseconds.

    CPU time (this process only) is the better number on a shared, loaded machine.
    """
    wall, cpu = [], []
    for seed in seeds:
        start, start_cpu = time.perf_counter_ns(), time.process_time_ns()
        render_scene(seed, **kwargs)
        wall.append((time.perf_counter_ns() - start) / 1e6)
        cpu.append((time.process_time_ns() - start_cpu) / 1e6)
    return statistics.median(wall), statistics.median(cpu)


def main() -> int:
    """Write the panel and print timings and densities."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', type=Path, default=Path('docs/images/synthetic_samples.png'))
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2, 3])
    parser.add_argument('--repeats', type=int, default=20)
    parser.add_argument('--scale', type=float, default=0.5, help='panel downscale factor')
    args = parser.parse_args()

    samples = [render_scene(seed, out_height=352, out_width=704) for seed in args.seeds]
    rows = [cv2.resize(panel(s), None, fx=args.scale, fy=args.scale,
                       interpolation=cv2.INTER_AREA) for s in samples]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_png(args.out, np.vstack(rows))
    print(f'wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KiB)')

    render_scene(100, out_height=352, out_width=704)  # warm-up (noise tables)
    seeds = range(1000, 1000 + args.repeats)
    for label, count, kwargs in (
            ('352x704 direct', len(seeds), dict(out_height=352, out_width=704)),
            ('352x704 resize', 5, dict(out_height=352, out_width=704, mode='resize')),
            ('1600x900      ', 5, {})):
        wall, cpu = median_ms(seeds[:count], **kwargs)
        print(f'render {label}: {wall:6.1f} ms wall, {cpu:6.1f} ms CPU (median)')
    in_view, lidar = [], []
    for seed in seeds:
        s = render_scene(seed, out_height=352, out_width=704)
        m = s.meta
        _, _, index = geometry.project_points(m['radar_points'], m['T_cam_from_radar'],
                                              m['K_full'], 1600, 900)
        in_view.append(len(index))
        lidar.append(int((s.gt_sparse > 0).sum()))
    print(f'radar returns in the 1600x900 view: median {statistics.median(in_view):.0f} '
          f'(min {min(in_view)}, max {max(in_view)})')
    print(f'LiDAR GT pixels at 352x704: median {statistics.median(lidar):.0f} '
          f'(min {min(lidar)}, max {max(lidar)})')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
