"""Per-operator time of an exported model in ONNX Runtime (CPU), from its own profiler.

Usage: .venv/bin/python bench/profile_ort.py MODEL.onnx [--threads 2] [--runs 5]
       [--provider cpu|openvino]
Prints the median run time, then kernel time per op type (ms per run, share) and the slowest
nodes. With ``--provider openvino`` (onnxruntime-openvino, FP32 as the engine asks) only the
median is printed: OpenVINO runs the whole graph as one ORT node. Inputs are random: a uint8 image and a radar map with ~1 % of pixels filled. Export a
model at another size first, e.g. ``xdrcdepth export --checkpoint CKPT --height 352 --width 704``.
"""
from __future__ import annotations

import argparse
from collections import defaultdict
import json
from pathlib import Path
import tempfile
import time

import numpy as np
import onnxruntime as ort


def session(path: Path, threads: int, profile_dir: Path | None = None,
            provider: str = 'cpu') -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    options.add_session_config_entry('session.force_spinning_stop', '1')  # as Engine does
    if profile_dir is not None:
        options.enable_profiling = True
        options.profile_file_prefix = str(profile_dir / 'ort')
    if provider == 'openvino':
        providers = [('OpenVINOExecutionProvider',
                      {'device_type': 'CPU', 'precision': 'FP32', 'num_of_threads': str(threads)})]
    else:
        providers = ['CPUExecutionProvider']
    sess = ort.InferenceSession(str(path), options, providers=providers)
    if provider == 'openvino' and sess.get_providers()[0] != 'OpenVINOExecutionProvider':
        raise SystemExit('OpenVINO did not start (onnxruntime-openvino installed?)')
    return sess


def random_feeds(sess: ort.InferenceSession) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    feeds = {}
    for info in sess.get_inputs():
        shape = [d if isinstance(d, int) else 1 for d in info.shape]
        if 'uint8' in info.type:
            feeds[info.name] = rng.integers(0, 256, shape, dtype=np.uint8)
        else:
            feeds[info.name] = ((rng.random(shape) < 0.01) * 30.0).astype(np.float32)
    return feeds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('model', type=Path)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--runs', type=int, default=5, help='profiled runs (after 3 warm-ups)')
    parser.add_argument('--top', type=int, default=15, help='slowest nodes to list')
    parser.add_argument('--provider', choices=('cpu', 'openvino'), default='cpu')
    args = parser.parse_args()

    timed = session(args.model, args.threads, provider=args.provider)
    feeds = random_feeds(timed)
    for _ in range(3):
        timed.run(None, feeds)
    times = []
    for _ in range(15):
        start = time.perf_counter()
        timed.run(None, feeds)
        times.append(time.perf_counter() - start)
    print(f'{args.model.name}: median {np.median(times) * 1e3:.1f} ms over 15 runs, '
          f'{args.threads} threads, {args.provider} (onnxruntime {ort.__version__})')
    if args.provider != 'cpu':
        return

    with tempfile.TemporaryDirectory() as folder:
        profiled = session(args.model, args.threads, Path(folder))
        for _ in range(3 + args.runs):
            profiled.run(None, feeds)
        events = json.loads(Path(profiled.end_profiling()).read_text())
    runs = [e for e in events if e.get('name') == 'model_run']
    first_timed = runs[3]['ts']  # skip the warm-up runs
    by_type: dict[str, float] = defaultdict(float)
    by_node: dict[str, float] = defaultdict(float)
    for event in events:
        if (event.get('cat') == 'Node' and event['name'].endswith('_kernel_time')
                and event['ts'] >= first_timed):
            by_type[event['args']['op_name']] += event['dur'] / args.runs / 1e3
            by_node[event['name'].removesuffix('_kernel_time')] += event['dur'] / args.runs / 1e3
    total = sum(by_type.values())
    print(f'kernel time {total:.1f} ms per run')
    for op, ms in sorted(by_type.items(), key=lambda item: -item[1]):
        print(f'  {op:20s} {ms:7.2f} ms {100 * ms / total:5.1f} %')
    print('slowest nodes:')
    for name, ms in sorted(by_node.items(), key=lambda item: -item[1])[:args.top]:
        print(f'  {name[:60]:60s} {ms:6.2f} ms')


if __name__ == '__main__':
    main()
