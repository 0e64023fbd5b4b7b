"""`python -m parc.compare <evals dir> --metric M --a arch=pythia --b arch=mamba [--step N] [--task T]`.

The difference A - B on one metric of parc.evaluate's table between two selections (two architectures at one
step, or two steps: `--a step=100 --b step=200`), with bootstrap 95 % intervals over seeds and, where
per-example results exist, over seeds and examples (MultiBERTs' Multi-Bootstrap). Deterministic: `--seed`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from parc.errors import exit_on_error


@exit_on_error
def main(argv=None) -> None:
    from parc.study import compare_evals as compare, describe_comparison as describe, parse_filters

    parser = argparse.ArgumentParser(prog="python -m parc.compare", description=__doc__.splitlines()[0])
    parser.add_argument("evals", help="the out= directory of python -m parc.evaluate")
    parser.add_argument("--metric", required=True)
    parser.add_argument("--task", help="the task, when the metric is reported for several")
    parser.add_argument("--a", action="append", required=True, help="column=value filters of selection A")
    parser.add_argument("--b", action="append", required=True, help="column=value filters of selection B")
    parser.add_argument("--step", type=int, help="the step of both selections")
    parser.add_argument("--samples", type=int, default=2000, help="bootstrap resamples (default 2000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the resampling (default 0)")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    args = parser.parse_args(argv)
    result = compare(Path(args.evals), args.metric, parse_filters(args.a), parse_filters(args.b), args.step,
                     args.task, args.samples, args.seed)
    print(json.dumps(result) if args.json else describe(result))


if __name__ == "__main__":
    main()
