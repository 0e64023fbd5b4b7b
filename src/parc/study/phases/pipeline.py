"""mini-Parc: the whole Parc study on a grid Parc trains itself, in one resumable command.

    python -m parc.study experiment=demo seeds=0-2 [archs=pythia,mamba,rwkv] [steps=0,1,2,...] [out=runs/demo]
                         [corpus=stream|consumed]

Stages, each printed as one progress line and each skipping what is already finished:
  1. train every cell (arch x seed) under `<out>/<arch>-seed<S>-shard<K>/` with `python -m parc.train`
     (one process per cell; a finished cell is skipped, an interrupted one continues through resume=auto);
  2. build the stimuli from text no cell trains on (parc.study.phases.stimulus_sets) -> `<out>/analysis/<data>.stims`;
  3. score them at the chosen checkpoints (parc.study.phases.surprisal_checkpoints, incremental per checkpoint);
  4. n-grams from the cells' own prepared stream (parc.study.phases.ngrams, index built once): `corpus=stream` (default,
     as the paper: every document but the stimuli's own) or `corpus=consumed` (only the batches trained on);
  5. statistics and figures (parc.study.phases.statistics, incremental per checkpoint).
Stages 2-5 are function calls in this process; training alone runs as child processes (see `Study.train`).
`stimuli_sizes` sets the stimulus-set sizes (as parc.stimuli's train= val= test=). `overrides` (training
overrides) go to every stage that composes the training config, so the stages agree on the data, the shard and
the checkpoints.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from parc.archs import NAMES as ARCHS
from parc.config import cell_name, compose
from parc.errors import EXIT_PREEMPTED, ParcError
from parc.training.runconfig import validate


def log_spaced_steps(saved: Sequence[int], max_steps: int) -> List[int]:
    """Step 0, the powers of two and the final step, among the steps the runs checkpoint, and every saved step
    after the last saved power of two (the evenly spaced tail of a Pythia-style schedule, where the later
    phases happen)."""
    saved = set(saved)
    powers = {2**k for k in range(max_steps.bit_length()) if 2**k <= max_steps}
    wanted = ({0, max_steps} | powers) & saved
    last_power = max(powers & saved, default=0)
    return sorted(wanted | {step for step in saved if step > last_power})


class Study:
    def __init__(
        self,
        overrides: List[str],
        seeds: Sequence[int] = (0,),
        archs: Optional[Sequence[str]] = None,
        steps: Optional[Sequence[int]] = None,
        out: Optional[Path] = None,
        corpus: str = "stream",
        stimuli_sizes: Optional[Dict[str, int]] = None,
    ):
        from parc.store.steps import checkpoint_steps
        from parc.study.phases.stimulus_sets import DEFAULT_SIZES

        self.overrides = list(overrides)
        self.stimuli_sizes = {**DEFAULT_SIZES, **(stimuli_sizes or {})}
        self.cfg = compose(self.overrides)
        validate(self.cfg)
        self.seeds, self.archs = list(seeds), list(archs or ARCHS)
        unknown = sorted(set(self.archs) - set(ARCHS))
        if unknown:
            raise ParcError(f"archs= names {unknown[0]!r}: choose from {', '.join(ARCHS)}")
        max_steps = self.cfg.trainer.max_steps
        saved = checkpoint_steps(self.cfg.checkpoint, max_steps)
        self.steps = list(steps) if steps else log_spaced_steps(saved, max_steps)
        missing = sorted(set(self.steps) - set(saved))
        if missing:
            raise ParcError(
                f"steps= asks for step {missing[0]}, which the runs do not checkpoint "
                f"(they save {', '.join(map(str, saved))}): choose steps among those"
            )
        self.out = Path(out or Path(self.cfg.paths.output_root) / self.cfg.run_name)
        self.analysis = self.out / "analysis"
        self.stimuli = self.analysis / f"{self.cfg.data.name}.stims"
        self.corpus = corpus
        self.timings: Dict[str, float] = {}

    def cell_dir(self, arch: str, seed: int) -> Path:
        return self.out / cell_name(arch, seed, self.cfg.data.shard)

    def stage(self, number: int, name: str, detail: str, work) -> None:
        say(f"parc.study [{number}/5] {name}: {detail}")
        started = time.perf_counter()
        work()
        self.timings[name] = time.perf_counter() - started
        say(f"parc.study [{number}/5] {name}: done in {self.timings[name]:.0f} s")

    def run(self) -> Dict[str, float]:
        cells = [(arch, seed) for seed in self.seeds for arch in self.archs]  # seed 0 of every arch first
        self.stage(
            1,
            "train",
            f"{len(cells)} cells x {self.cfg.trainer.max_steps} steps under {self.out}",
            lambda: [self.train(arch, seed) for arch, seed in cells],
        )
        self.stage(2, "stimuli", str(self.stimuli), self.build_stimuli)
        self.stage(3, "surprisal", f"{len(cells)} runs at steps {','.join(map(str, self.steps))}", self.score)
        self.stage(4, "ngrams", f"orders 1-5 from the cells' data (corpus={self.corpus})", self.ngrams)
        self.stage(5, "phases", f"statistics and figures in {self.analysis}", self.phases)
        return self.timings

    def train(self, arch: str, seed: int) -> None:
        from parc.store.checkpoint import complete_checkpoints, step_of

        directory = self.cell_dir(arch, seed)
        if self.cfg.trainer.max_steps in {step_of(p) for p in complete_checkpoints(directory)}:
            say(f"parc.study   {directory.name}: already trained")
            return
        say(f"parc.study   {directory.name}: training")
        # A child process per cell, not train() in this one: each cell then starts as `python -m parc.train`
        # alone does (fresh RNG, torch thread and Accelerate state, bit-identical to training it by hand), its
        # memory is returned when it ends, and a preemption (exit 75) maps to "run the same command again".
        self.command(
            "parc.train",
            *self.overrides,
            f"arch={arch}",
            f"seed={seed}",
            f"output_dir={directory}",
            "trainer.progress=false",
            "resume=auto",
        )

    def build_stimuli(self) -> None:
        if self.stimuli.is_file():
            say(f"parc.study   {self.stimuli} exists")
            return
        from parc.study.phases.stimulus_sets import PAPER_SEED, build_stimuli

        cfg = compose([*self.overrides, *self.recorded_data()])
        validate(cfg)
        say(build_stimuli(cfg, self.stimuli, self.stimuli_sizes, PAPER_SEED).summary)

    def recorded_data(self) -> List[str]:
        """`data.dir=` where the first cell recorded its stream (unless given): later stages then read the
        data the cells trained on even when this command runs in another directory than training did."""
        from parc.data.location import recorded_stream_dir
        from parc.training.runconfig import gives_data_dir

        if gives_data_dir(self.overrides):
            return []
        recorded = recorded_stream_dir(self.cell_dir(self.archs[0], self.seeds[0]))
        return [f"data.dir={recorded}"] if recorded is not None else []

    def runs(self) -> str:
        return ",".join(str(self.cell_dir(arch, seed)) for arch in self.archs for seed in self.seeds)

    def score(self) -> None:
        from parc.study.phases.surprisal_checkpoints import run_surprisal

        paths = run_surprisal(str(self.stimuli), self.runs(), self.steps, self.analysis)
        say(f"  wrote {paths[0]} and {paths[1]}")

    def ngrams(self) -> None:
        from parc.study.phases.ngrams import run_ngrams

        run_ngrams(
            str(self.stimuli),
            self.overrides,
            self.runs(),
            self.analysis,
            corpus=self.corpus,
            vectors=True,
            log=lambda line: say(f"  {line}"),
        )

    def phases(self) -> None:
        from parc.study.phases.statistics import run_phases

        run_phases(self.analysis, stimuli=str(self.stimuli), log=lambda line: say(f"  {line}"))

    def command(self, module: str, *args: str) -> None:
        """Run `python -m module args` with its output passed through; a failure stops the study (one line)."""
        result = subprocess.run([sys.executable, "-m", module, *args], stdin=subprocess.DEVNULL)
        if result.returncode == EXIT_PREEMPTED:  # the trainer saved a checkpoint on SIGTERM/SIGUSR1 (preemption)
            raise ParcError(
                f"python -m {module} was interrupted after saving a checkpoint: run the same parc.study "
                f"command again to continue (finished work is kept)"
            )
        if result.returncode:
            raise ParcError(
                f"python -m {module} failed (exit {result.returncode}; its message is above): fix "
                f"that and run the same parc.study command again (finished work is kept)"
            )


def say(line: str) -> None:
    print(line, flush=True)  # before a child process writes its own lines


def run_study(
    overrides: List[str],
    seeds: Sequence[int] = (0,),
    archs: Optional[Sequence[str]] = None,
    steps: Optional[Sequence[int]] = None,
    out: Optional[Path] = None,
    corpus: str = "stream",
    stimuli_sizes: Optional[Dict[str, int]] = None,
) -> Dict[str, float]:
    """The whole of `python -m parc.study`; returns the seconds each stage took."""
    return Study(overrides, seeds, archs, steps, out, corpus, stimuli_sizes).run()
