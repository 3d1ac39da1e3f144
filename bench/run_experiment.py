#!/usr/bin/env python3
"""The KD ablation on the synthetic benchmark: teacher, then 4 student variants x N seeds.

Every run is a plain ``xdrcdepth train`` / ``xdrcdepth evaluate-model`` subprocess (the exact
commands are printed and stored), logs go to ``runs/experiment/logs``, finished runs are skipped
on a re-run (delete ``runs/experiment/results.jsonl`` to start over). The table is written to
``docs/experiments.json``.

    .venv/bin/python bench/run_experiment.py --seeds 0 1
"""
from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {
    'direct': ['kd.saliency_weight=0', 'kd.distribution_weight=0'],
    'saliency_kd': ['kd.distribution_weight=0'],
    'distribution_kd': ['kd.saliency_weight=0'],
    'both_kd': [],
}


def sh(cmd: list[str], log: Path) -> float:
    """Run ``cmd`` in the repo root with output to ``log``; returns wall seconds."""
    print('$', shlex.join(cmd), flush=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with log.open('w') as fh:
        proc = subprocess.run(cmd, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT)
    if proc.returncode:
        sys.exit(f'command failed ({proc.returncode}); see {log}')
    return time.perf_counter() - start


def evaluate(ckpt: Path, args: argparse.Namespace, log: Path) -> dict:
    cmd = [sys.executable, '-m', 'xdrcdepth_ros', 'evaluate-model', '--checkpoint', str(ckpt),
           '--split', 'test', '--size', str(args.test_size), '--cache-dir', args.cache_dir,
           '--json']
    sh(cmd, log)
    lines = [ln for ln in log.read_text().splitlines() if ln.startswith('{')]
    return json.loads(lines[-1])['metrics']['80']


def markdown(rows: list[dict]) -> str:
    """The results as markdown: one line per run, then per-variant means and change vs direct."""
    lines = ['| variant | seed | MAE (m) | RMSE (m) | AbsRel | δ1 | wall (s) |',
             '|---|---|---|---|---|---|---|']
    for r in rows:
        lines.append(f"| {r['variant']} | {r['seed']} | {r['mae_m']:.3f} | {r['rmse_m']:.3f} | "
                     f"{r['abs_rel']:.3f} | {r['delta1']:.3f} | {r['wall_s']:.0f} |")
    means = {}
    for variant in VARIANTS:
        sel = [r for r in rows if r['variant'] == variant]
        if sel:
            means[variant] = {k: sum(r[k] for r in sel) / len(sel) for k in ('mae_m', 'rmse_m')}
            means[variant]['n'] = len(sel)
    lines += ['', '| variant | seeds | mean MAE (m) | MAE std (m) | MAE min–max (m) | '
              'mean RMSE (m) | MAE vs direct |', '|---|---|---|---|---|---|---|']
    base = means.get('direct', {}).get('mae_m')
    for variant, m in means.items():
        maes = [r['mae_m'] for r in rows if r['variant'] == variant]
        std = (sum((v - m['mae_m']) ** 2 for v in maes) / (len(maes) - 1)) ** 0.5 \
            if len(maes) > 1 else float('nan')
        change = f"{100 * (m['mae_m'] / base - 1):+.2f} %" if base else 'n/a'
        lines.append(f"| {variant} | {m['n']} | {m['mae_m']:.3f} | {std:.3f} | "
                     f"{min(maes):.3f}–{max(maes):.3f} | {m['rmse_m']:.3f} | {change} |")
    return '\n'.join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1])
    parser.add_argument('--variants', nargs='+', default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument('--out', default='runs/experiment')
    parser.add_argument('--cache-dir', default='runs/cache')
    parser.add_argument('--test-size', type=int, default=64)
    parser.add_argument('--teacher', default=None,
                        help='use this teacher checkpoint instead of training OUT/teacher')
    parser.add_argument('--teacher-steps', type=int, default=None)
    parser.add_argument('--student-steps', type=int, default=None)
    parser.add_argument('--json-out', default='docs/experiments.json')
    parser.add_argument('--report', action='store_true',
                        help='only print the markdown table of the finished runs')
    parser.add_argument('--set', dest='extra', action='append', default=[],
                        help='extra student override, e.g. kd.tau=2')
    args = parser.parse_args()
    out = ROOT / args.out
    results_path = out / 'results.jsonl'
    done = {}
    if results_path.exists():
        for line in results_path.read_text().splitlines():
            row = json.loads(line)
            done[(row['variant'], row['seed'])] = row
    if args.report:
        rows = sorted(done.values(), key=lambda r: (list(VARIANTS).index(r['variant']), r['seed']))
        print(markdown(rows))
        return 0
    py = [sys.executable, '-m', 'xdrcdepth_ros', 'train']
    sys.path.insert(0, str(ROOT))
    from xdrcdepth_ros.train.config import load_config

    student_cfg = load_config(ROOT / 'config' / 'train_synthetic_student.yaml', args.extra)
    default_steps = student_cfg.optim.steps
    init = student_cfg.model.pretrained  # rows of another initialisation are kept apart
    teacher = Path(args.teacher) if args.teacher else out / 'teacher' / 'last.pt'
    if not teacher.exists():
        cmd = py + ['--config', 'config/train_synthetic_teacher.yaml',
                    '--out', str(out / 'teacher')]
        if args.teacher_steps:
            cmd += ['--steps', str(args.teacher_steps)]
        wall = sh(cmd, out / 'logs' / 'teacher.log')
        metrics = evaluate(teacher, args, out / 'logs' / 'teacher_eval.log')
        (out / 'teacher_result.json').write_text(json.dumps(
            {'command': shlex.join(cmd), 'wall_s': wall, 'test_cap80': metrics}, indent=2))
    for seed in args.seeds:
        for variant in args.variants:
            if (variant, seed) in done:
                continue
            run_dir = out / f'{variant}_s{seed}'
            cmd = py + ['--config', 'config/train_synthetic_student.yaml', '--out', str(run_dir),
                        '--seed', str(seed)]
            if variant != 'direct':
                cmd += ['--teacher', str(teacher)]
            for item in VARIANTS[variant] + args.extra:
                cmd += ['--set', item]
            if args.student_steps:
                cmd += ['--steps', str(args.student_steps)]
            steps = args.student_steps or default_steps
            wall = sh(cmd, out / 'logs' / f'{variant}_s{seed}.log')
            metrics = evaluate(run_dir / 'last.pt', args,
                               out / 'logs' / f'{variant}_s{seed}_eval.log')
            row = {'variant': variant, 'seed': seed, 'steps': steps, 'init': init,
                   'teacher': str(teacher) if variant != 'direct' else None,
                   'mae_m': metrics['mae_m'],
                   'rmse_m': metrics['rmse_m'], 'abs_rel': metrics['abs_rel'],
                   'delta1': metrics['delta1'], 'wall_s': round(wall, 1),
                   'test_samples': args.test_size, 'cap_m': 80, 'command': shlex.join(cmd)}
            done[(variant, seed)] = row
            with results_path.open('a') as fh:
                fh.write(json.dumps(row) + '\n')
            print(json.dumps(row), flush=True)
    rows = [done[k] for k in sorted(done, key=lambda k: (list(VARIANTS).index(k[0]), k[1]))]
    for row in rows:
        row.setdefault('steps', default_steps)
    # Merge with rows of other schedules already in the file (same variant/seed/steps replaced).
    json_path = ROOT / args.json_out
    old = json.loads(json_path.read_text()) if json_path.exists() else []
    for row in old:
        row.setdefault('steps', default_steps)
        row.setdefault('init', 'none')  # rows from before ImageNet initialisation existed

    def key(r: dict) -> tuple:
        return r['init'], r['variant'], r['seed'], r['steps']

    for row in rows:
        row.setdefault('init', init)
    mine = {key(r) for r in rows}
    merged = [r for r in old if key(r) not in mine] + rows
    merged.sort(key=lambda r: (r['init'], r['steps'], list(VARIANTS).index(r['variant']),
                               r['seed']))
    json_path.write_text(json.dumps(merged, indent=2) + '\n')
    for variant in VARIANTS:
        maes = [r['mae_m'] for r in rows if r['variant'] == variant]
        if maes:
            print(f'{variant:16s} mean MAE {sum(maes) / len(maes):.3f} m over {len(maes)} seeds')
    return 0


if __name__ == '__main__':
    sys.exit(main())
