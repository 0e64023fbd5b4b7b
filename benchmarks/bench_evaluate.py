"""E1: evaluating a demo grid's checkpoints on the same lm-eval tasks: `python -m parc.evaluate` vs the Parc way.

- the Parc way: one fresh `lm_eval --model hf --model_args pretrained=<checkpoint> --tasks ...` process per
  checkpoint (revision), as the Parc authors ran it (here on the local checkpoint directories, so no download is
  timed on either side). They passed `--batch_size auto`; on CPU that probes at the maximum batch (64) and
  length (2048 for Mamba, whose config names none) and never backs off: a tiny Mamba checkpoint was still
  probing after 20 minutes at 9 GB here. So this side runs `--batch_size 8` (BASELINE_BATCH), which only makes
  it faster than the Parc way was;
- ours: one `python -m parc.evaluate runs=<grid> eval.evaluations=[] eval.tasks=[...]` process for the whole grid
  (one module per architecture, weights loaded in place, tasks indexed once, integer batch size).
Both read the same three local tasks built from the demo corpus (minimal pairs = multiple choice, rolling
perplexity, cloze), zero-shot. Reported: wall seconds for the whole grid on each side, alternating, and the
largest difference between the two sides' numbers for the same (checkpoint, task, metric).

E1-grid (closing note): the time to evaluate a 3 archs x 3 seeds demo grid end to end with the default
evaluation (held-out loss) plus the same tasks, one `parc.evaluate` process.
"""

from __future__ import annotations

import gzip
import json
import re
import shutil
import time
from pathlib import Path
from typing import Dict, List

import common

TASKS = ["e1_pairs", "e1_ppl", "e1_cloze"]
BASELINE_BATCH = "8"  # not "auto": see the module docstring


def sizes(args) -> dict:
    if args.smoke:  # one 2-step run, one checkpoint, both sides in this process
        return {
            "runs": [("pythia", 0)],
            "steps": 2,
            "every": 2,
            "evaluate": [2],
            "docs": 4,
            "repeats": 1,
            "grid": False,
        }
    if args.quick:
        return {
            "runs": [("pythia", 0), ("pythia", 1), ("mamba", 0)],
            "steps": 8,
            "every": 4,
            "evaluate": [8],
            "docs": 20,
            "repeats": 1,
            "grid": False,
        }
    return {
        "runs": [("pythia", 0), ("pythia", 1), ("mamba", 0)],
        "steps": 8,
        "every": 4,
        "evaluate": [0, 4, 8],
        "docs": 100,
        "repeats": 2,
        "grid": True,
    }


def demo_lines(count: int) -> List[str]:
    """Verse lines of 6-14 words from the demo plays, in order: a deterministic source of task documents."""
    lines = []
    for play in gzip.open(common.DEMO_CORPUS, "rt"):
        for line in json.loads(play)["text"].splitlines():
            words = line.strip().split()
            if 6 <= len(words) <= 14 and re.fullmatch(r"[A-Za-z ,;:'.!?-]+", line.strip()):
                lines.append(" ".join(words))
    step = max(1, len(lines) // count)
    return lines[::step][:count]


def write_tasks(directory: Path, docs: int) -> Path:
    lines = demo_lines(3 * docs)
    pairs = [{"good": ln, "bad": " ".join(_swap(ln.split()))} for ln in lines[:docs]]
    texts = [{"text": ln} for ln in lines[docs : 2 * docs]]
    cloze = [{"context": " ".join(ln.split()[:-1]), "target": " " + ln.split()[-1]} for ln in lines[2 * docs :]]
    specs = {
        "e1_pairs": (
            "multiple_choice",
            pairs,
            'doc_to_text: ""\ndoc_to_choice: "{{[good, bad]}}"\ndoc_to_target: 0\n'
            'target_delimiter: ""\nmetric_list:\n  - metric: acc',
        ),
        "e1_ppl": (
            "loglikelihood_rolling",
            texts,
            'doc_to_text: ""\ndoc_to_target: "{{text}}"\nmetric_list:\n'
            "  - metric: word_perplexity\n  - metric: bits_per_byte",
        ),
        "e1_cloze": (
            "loglikelihood",
            cloze,
            'doc_to_text: "{{context}}"\ndoc_to_target: "{{target}}"\n'
            'target_delimiter: ""\nmetric_list:\n  - metric: acc\n  - metric: perplexity',
        ),
    }
    from parc.study.evaluations.lmeval import write_local_task

    for name, (output_type, records, body) in specs.items():
        write_local_task(directory, name, output_type, records, body)
    return directory


def _swap(words: List[str]) -> List[str]:
    """The minimal pair's bad sentence: the two middle words exchanged."""
    i = len(words) // 2
    return words[: i - 1] + [words[i], words[i - 1]] + words[i + 1 :]


def train_grid(root: Path, runs, steps: int, every: int, local: bool = False) -> Path:
    """The demo runs, trained once (parc.train's own entry, in one interpreter) and reused between benchmarks."""
    grid = root / "runs" / "demo"
    from parc.config import cell_name
    from parc.store.checkpoint import checkpoint_path, is_complete

    todo = [r for r in runs if not is_complete(checkpoint_path(grid / cell_name(r[0], r[1], 0), steps))]
    if todo:
        overrides = [
            [
                "experiment=demo",
                f"paths.root={root}",
                f"arch={arch}",
                f"seed={seed}",
                f"trainer.max_steps={steps}",
                f"checkpoint.every={every}",
                "trainer.progress=false",
            ]
            for arch, seed in todo
        ]
        script = (
            "import json, sys\nfrom parc.config import compose\nfrom parc.train import run\n"
            "for o in json.loads(sys.argv[1]):\n    run(compose(o))\n"
        )
        common.child(["-c", script, json.dumps(overrides)], timeout=7200, local=local)
    return grid


def checkpoints(grid: Path, steps: List[int]) -> List[Path]:
    from parc.store.checkpoint import complete_checkpoints, step_of

    return [
        c for run in sorted(grid.iterdir()) if run.is_dir() for c in complete_checkpoints(run) if step_of(c) in steps
    ]


class Clock:
    """Wall seconds, and CPU seconds of the children that ended meanwhile (the machine is shared: CPU seconds
    say how much work each side did whatever the others running beside it)."""

    def __enter__(self):
        self.wall, self.cpu = time.monotonic(), self._children_cpu()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.monotonic() - self.wall, self._children_cpu() - self.cpu

    @staticmethod
    def _children_cpu() -> float:
        import resource

        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime


def ours(grid: Path, steps: List[int], tasks: Path, out: Path, cpu: List[float], evaluations: str = "[]") -> float:
    """Both sides run as real processes, smoke runs too: lm-eval's bootstrap (perplexity stderrs) forks a
    multiprocessing pool, which can deadlock when forked from a process already running threads (the smoke run's)."""
    shutil.rmtree(out, ignore_errors=True)
    with Clock() as clock:
        common.child(
            [
                "-m",
                "parc.evaluate",
                f"runs={grid}",
                f"steps={','.join(map(str, steps))}",
                f"eval.evaluations={evaluations}",
                f"eval.tasks=[{','.join(TASKS)}]",
                f"eval.include_path={tasks}",
                "eval.batch_size=8",
                "progress=false",
                f"out={out}",
            ]
        )
    cpu.append(clock.cpu)
    return clock.wall


def parc_way(grid: Path, steps: List[int], tasks: Path, out: Path, cpu: List[float]) -> float:
    shutil.rmtree(out, ignore_errors=True)
    with Clock() as clock:
        for index, checkpoint in enumerate(checkpoints(grid, steps)):  # what the `lm_eval` console script runs
            common.child(
                [
                    "-m",
                    "lm_eval",
                    "--model",
                    "hf",
                    "--model_args",
                    f"pretrained={checkpoint}",
                    "--tasks",
                    ",".join(TASKS),
                    "--include_path",
                    str(tasks),
                    "--batch_size",
                    BASELINE_BATCH,
                    "--device",
                    "cpu",
                    "--num_fewshot",
                    "0",
                    "--output_path",
                    str(out / str(index)),
                ]
            )
            (out / str(index) / "checkpoint.txt").write_text(str(checkpoint))
    cpu.append(clock.cpu)
    return clock.wall


def baseline_numbers(out: Path) -> Dict[tuple, float]:
    numbers = {}
    for marker in out.glob("*/checkpoint.txt"):
        checkpoint = Path(marker.read_text())
        (results_file,) = list(marker.parent.rglob("results_*.json"))
        results = json.loads(results_file.read_text())["results"]
        for task, metrics in results.items():
            for key, value in metrics.items():
                if "," in key and "_stderr" not in key and isinstance(value, (int, float)):
                    numbers[(str(checkpoint.parent), checkpoint.name, task, key.split(",")[0])] = float(value)
    return numbers


def our_numbers(out: Path) -> Dict[tuple, float]:
    import pandas as pd

    frame = pd.read_parquet(out / "results.parquet")
    frame = frame[frame.evaluation == "lm_eval"]
    return {
        (s, r, t, m): float(v)
        for s, r, t, m, v in zip(frame.source, frame.revision, frame.task, frame.metric, frame.value)
    }


def run(args) -> List[dict]:
    size = sizes(args)
    work = args.work / "e1"
    root = common.demo_root(args.work)  # the prepared demo stream the other benchmarks use too
    grid = train_grid(root, size["runs"], size["steps"], size["every"], local=args.smoke)
    tasks = write_tasks(work / "tasks", size["docs"])
    steps = size["evaluate"]
    n_checkpoints = len(checkpoints(grid, steps))
    cpu = {"ours": [], "baseline": []}
    runs = common.alternate(
        {
            "ours": lambda: ours(grid, steps, tasks, work / "ours", cpu["ours"]),
            "baseline": lambda: parc_way(grid, steps, tasks, work / "parc-way", cpu["baseline"]),
        },
        size["repeats"],
    )
    mine, theirs = our_numbers(work / "ours"), baseline_numbers(work / "parc-way")
    shared = sorted(set(mine) & set(theirs))
    worst = max((abs(mine[k] - theirs[k]) / max(1.0, abs(theirs[k])) for k in shared), default=float("nan"))
    acc_equal = all(mine[k] == theirs[k] for k in shared if k[3] == "acc")
    lines = [
        common.emit(
            common.compare(
                "E1",
                "s",
                runs,
                better="lower",
                checkpoints=n_checkpoints,
                tasks=TASKS,
                docs_per_task=size["docs"],
                numbers_compared=len(shared),
                numbers_expected=len(theirs),
                max_rel_difference=worst,
                acc_identical=acc_equal,
            )
        ),
        common.emit(common.compare("E1-cpu", "cpu s", cpu, better="lower", checkpoints=n_checkpoints)),
    ]
    if size["grid"]:
        if not (work / "grid3x3" / "data").exists():  # the same prepared stream: no second tokenization
            shutil.copytree(root / "data", work / "grid3x3" / "data")
        grid9 = train_grid(
            work / "grid3x3",
            [(a, s) for a in ("pythia", "mamba", "rwkv") for s in (0, 1, 2)],
            size["steps"],
            size["every"],
        )
        grid_cpu: List[float] = []
        seconds = ours(grid9, [0, 4, 8], tasks, work / "grid3x3-evals", grid_cpu, evaluations="[heldout]")
        lines.append(
            common.emit(
                {
                    "bench": "E1-grid",
                    "unit": "s",
                    "ours": round(seconds, 1),
                    "cpu_s": round(grid_cpu[0], 1),
                    "checkpoints": len(checkpoints(grid9, [0, 4, 8])),
                    "evaluations": ["heldout", "lm_eval"],
                    "tasks": TASKS,
                }
            )
        )
    return lines


if __name__ == "__main__":
    common.standalone(run, __doc__.splitlines()[0])
