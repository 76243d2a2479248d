"""The ``medimg`` command line: ``medimg info``, ``medimg bench metrics|augment|intensity|data|conv|models``."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence


def _info(args: argparse.Namespace) -> int:
    from medimg import info

    data = info()
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    width = max(len(k) for k in data)
    for key, value in data.items():
        shown = ", ".join(map(str, value)) if isinstance(value, list) else value
        print(f"{key:<{width}}  {'-' if shown in (None, '') else shown}")
    return 0


def _bench(args: argparse.Namespace) -> int:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from medimg.bench.peers import unavailable_peers

    suite = importlib.import_module(f"medimg.bench.{args.suite}")
    wanted = ("cpu", "cuda") if args.device == "all" else (args.device,)
    devices = tuple(d for d in wanted if d in suite.DEVICES and (d == "cpu" or torch.cuda.is_available()))
    if not devices:
        print(f"medimg bench {args.suite}: nothing to run on {args.device} "
              f"(this suite runs on {', '.join(suite.DEVICES)}; CUDA available: {torch.cuda.is_available()})")
        return 1
    print(suite.run(min_run_time=args.min_run_time, devices=devices))
    if note := unavailable_peers():
        print(note)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medimg", description="Deep learning for biomedical images.")
    commands = parser.add_subparsers(dest="command", required=True)

    info = commands.add_parser("info", help="versions, kernels built, CPU path, GPUs, Triton")
    info.add_argument("--json", action="store_true", help="print a JSON object")
    info.set_defaults(run=_info)

    bench = commands.add_parser("bench", help="time medimg against the PyTorch reference and peers")
    bench.add_argument("suite", choices=["metrics", "augment", "intensity", "data", "conv", "models"],
                       help="which benchmark suite")
    bench.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's setting)")
    bench.add_argument("--device", choices=["all", "cpu", "cuda"], default="all",
                       help="where to run: the CPU, the CUDA device, or both (default; CUDA where available)")
    bench.add_argument("--min-run-time", type=float, default=0.5, help="seconds of measurement per entry")
    bench.set_defaults(run=_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
