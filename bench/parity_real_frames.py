"""ORT vs torch on the bundled real nuScenes frames, for an exported model and its checkpoint.

Usage: .venv/bin/python bench/parity_real_frames.py [--model models/xdrcdepth_student.onnx]
       [--checkpoint CKPT]

``xdrcdepth export`` checks parity on a synthetic input, where a trained model's saliency is
often zero everywhere; this runs both on the real frames instead and prints, per frame, the max
absolute depth error (m), the max saliency error and the share of salient pixels.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from xdrcdepth_ros.benchmark import bench_frames as _frames
from xdrcdepth_ros.core.engine import Engine
from xdrcdepth_ros.export import ExportWrapper
from xdrcdepth_ros.model import load_checkpoint
from xdrcdepth_ros.core.pipeline import DepthPipeline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--model', type=Path, default=Path('models/xdrcdepth_student.onnx'))
    parser.add_argument('--checkpoint', type=Path,
                        help="default: the checkpoint named in the model's metadata")
    parser.add_argument('--dataroot', type=Path, default=Path('test/data/nuscenes'))
    args = parser.parse_args()

    engine = Engine(args.model)
    checkpoint = args.checkpoint or Path(engine.metadata.checkpoint or '')
    if not checkpoint.is_file():
        raise SystemExit(f'checkpoint not found: {checkpoint} (pass --checkpoint)')
    wrapper = ExportWrapper(load_checkpoint(checkpoint)[0].eval(),
                            with_saliency=engine.metadata.has_saliency).eval()
    pipeline = DepthPipeline(engine)
    worst_depth, worst_saliency = 0.0, 0.0
    for index, frame in enumerate(_frames(args.dataroot, engine.metadata.radar_fields)):
        prepared = pipeline.run(frame)
        depth, saliency = engine.run(prepared.image, prepared.radar_map)
        with torch.inference_mode():
            outputs = wrapper(torch.from_numpy(prepared.image[None].copy()),
                              torch.from_numpy(prepared.radar_map[None].copy()))
        outputs = outputs if isinstance(outputs, tuple) else (outputs,)
        depth_error = float(np.abs(depth - outputs[0][0, 0].numpy()).max())
        worst_depth = max(worst_depth, depth_error)
        line = f'frame {index}: depth max |ORT - torch| {depth_error:.2e} m'
        if saliency is not None:
            reference = outputs[1][0, 0].numpy()
            saliency_error = float(np.abs(saliency - reference).max())
            worst_saliency = max(worst_saliency, saliency_error)
            line += (f', saliency {saliency_error:.2e} ({100 * np.mean(reference > 0):.1f} % '
                     'of pixels salient)')
        print(line)
    print(f'worst: depth {worst_depth:.2e} m, saliency {worst_saliency:.2e}')


if __name__ == '__main__':
    main()
