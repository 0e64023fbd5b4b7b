"""`python -m parc.compare <evals dir> metric=M a=arch=pythia b=arch=mamba [step=N] [task=T] [json=true]`.

The difference A - B on one metric of parc.evaluate's table between two selections (two architectures at one
step, or two steps: `a=step=100 b=step=200`; several filters: `a=arch=rwkv,step=640`), with bootstrap 95 %
intervals over seeds and, where per-example results exist, over seeds and examples (MultiBERTs'
Multi-Bootstrap). Deterministic: `seed=`.
"""

from __future__ import annotations

import json
from typing import List, Optional

from parc.cli import REQUIRED, STRS, Command, Key, Paths
from parc.errors import exit_on_error

COMMAND = Command(
    "parc.compare",
    __doc__,
    paths=Paths("evals dir"),
    keys=(
        Key("metric", str, REQUIRED, "the metric column to compare"),
        Key("a", STRS, REQUIRED, "column=value filters of selection A", example="arch=pythia"),
        Key("b", STRS, REQUIRED, "column=value filters of selection B", example="arch=mamba"),
        Key("step", int, None, "the step of both selections"),
        Key("task", str, None, "the task, when the metric is reported for several"),
        Key("samples", int, 2000, "bootstrap resamples"),
        Key("seed", int, 0, "seed of the resampling"),
        Key("json", bool, False, "print the result as one JSON object"),
    ),
    deprecated={f"--{name}": name for name in ("metric", "a", "b", "step", "task", "samples", "seed", "json")},
    example="python -m parc.compare runs/demo/evals metric=loss a=arch=pythia b=arch=mamba",
)


@exit_on_error
def main(argv: Optional[List[str]] = None) -> None:
    args = COMMAND.parse(argv)
    from parc.study import compare_evals as compare
    from parc.study import describe_comparison as describe
    from parc.study import parse_filters

    result = compare(
        args.paths[0],
        args.metric,
        parse_filters(args.a),
        parse_filters(args.b),
        args.step,
        args.task,
        args.samples,
        args.seed,
    )
    print(json.dumps(result) if args.json else describe(result))


if __name__ == "__main__":
    main()
