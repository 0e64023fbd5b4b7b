"""Living with the Hub's commit limit (128 commits per hour per repository) without blocking training.

`CommitPacer` spaces the uploader's commits at least 3600 / `hub.max_commits_per_hour` seconds apart
(the time of the last commit comes from the journal, so a restarted run or `parc.sync` keeps the pace),
which keeps the limit from being hit at all; when it is hit anyway (another writer, a smaller limit), the
429's `Retry-After` or `RateLimit` headers say how long to wait (`rate_limit_wait`). Every wait happens
in the uploader thread and ends early when the publisher is told to stop (`hub.wait_at_end` elapsed):
`PushInterrupted` leaves the revision pending in the journal for `parc.sync` or the next run.

`commit_estimate` is the dry run's view: the peak commits per hour the checkpoint schedule asks for at a
given step time, and how long after training the last revision would be published under the budget.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Iterable, List, Optional

log = logging.getLogger("parc.hub.publisher")

HUB_LIMIT_PER_HOUR = 128  # huggingface.co: "the rate limit for repository commits (128 per hour)"


class PushInterrupted(Exception):
    """The publisher was told to stop while a push waited; the revision stays pending in the journal."""


def wait_or_stop(stop: Optional[threading.Event], seconds: float) -> None:
    """Sleep `seconds`, or raise PushInterrupted as soon as `stop` is set."""
    if seconds <= 0:
        return
    if stop is None:
        time.sleep(seconds)
    elif stop.wait(seconds):
        raise PushInterrupted()


def rate_limit_wait(exc: BaseException) -> float:
    """Seconds a 429 (or 503) says to wait: `Retry-After`, or the `RateLimit` header's reset when nothing
    remains (the IETF draft the Hub follows, parsed by huggingface_hub); 0 when the response says neither."""
    from huggingface_hub.utils import parse_ratelimit_headers

    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        headers = getattr(getattr(exc, "response", None), "headers", None) or {}
        waits = []
        value = headers.get("Retry-After") if hasattr(headers, "get") else None
        if value is not None and str(value).strip().isdigit():
            waits.append(float(value))
        try:
            info = parse_ratelimit_headers(headers)
        except (TypeError, ValueError, AttributeError):
            info = None
        if info is not None and info.remaining == 0:
            waits.append(float(info.reset_in_seconds))
        if waits:
            return max(waits)
        exc = exc.__cause__ or exc.__context__
    return 0.0


class CommitPacer:
    """At most `max_per_hour` commits per hour, evenly spaced (a rate every window size respects)."""

    def __init__(
        self, max_per_hour: float, last_commit: Optional[float] = None, stop: Optional[threading.Event] = None
    ):
        self.interval_s = 3600.0 / float(max_per_hour)
        self.last_commit = last_commit  # wall-clock time (time.time()): it comes from the journal
        self.stop = stop

    def before_commit(self) -> None:
        if self.last_commit is None:
            return
        wait = self.last_commit + self.interval_s - time.time()
        if wait > 1.0:
            log.info("hub: next commit in %.0f s (hub.max_commits_per_hour=%g)", wait, 3600.0 / self.interval_s)
        wait_or_stop(self.stop, wait)

    def after_commit(self) -> None:
        self.last_commit = time.time()


def peak_per_hour(times_s: List[float]) -> int:
    """The most events in any one-hour window (two pointers over the sorted times)."""
    times_s, best, first = sorted(times_s), 0, 0
    for last, at in enumerate(times_s):
        while at - times_s[first] >= 3600.0:
            first += 1
        best = max(best, last - first + 1)
    return best


def publish_lag(ready_s: Iterable[float], max_per_hour: float) -> float:
    """Seconds from the last revision being ready until it is published, commits in order and spaced."""
    interval, published, last_ready = 3600.0 / float(max_per_hour), None, 0.0
    for ready in sorted(ready_s):
        published = ready if published is None else max(ready, published + interval)
        last_ready = ready
    return 0.0 if published is None else published - last_ready


def commit_estimate(steps: List[int], step_time_s: float, max_per_hour: float) -> dict:
    """What the schedule asks of the Hub: one commit per checkpoint revision plus one for main."""
    ready = [step * step_time_s for step in steps]
    commits = ready + ([ready[-1]] if ready else [])  # main gets the final checkpoint, one more commit
    return {
        "commits": len(commits),
        "peak_per_hour": peak_per_hour(commits),
        "lag_s": publish_lag(commits, max_per_hour),
        "train_s": ready[-1] if ready else 0.0,
    }


ASSUMED_TOKENS_PER_S = 150_000  # this project's speed target on one GPU, when nothing was measured yet


def commit_budget_line(cfg, steps: List[int], tokens_per_step: int, measured_step_s: Optional[float] = None) -> str:
    """The dry run's line: commits per hour the schedule asks of the Hub, and a warning over the budget.

    `measured_step_s`: the run's own median step time so far (parc.training.metrics.measured_step_s), if any."""
    if not cfg.hub.repo_id:
        return "no Hub publishing (hub.repo_id=null)"
    step_s, source = cfg.hub.step_time_s, "hub.step_time_s"
    if step_s is None:
        step_s, source = measured_step_s, "measured"
    if step_s is None:
        step_s, source = tokens_per_step / ASSUMED_TOKENS_PER_S, f"assumed at {ASSUMED_TOKENS_PER_S:,} tokens/s"
    budget = float(cfg.hub.max_commits_per_hour)
    estimate = commit_estimate(steps, float(step_s), budget)
    line = (
        f"{estimate['commits']} commits, {estimate['peak_per_hour']} at peak per hour at {step_s:.3g} s/step ({source})"
    )
    if estimate["peak_per_hour"] <= budget:
        return f"{line}: within hub.max_commits_per_hour={budget:g}"
    return (
        f"{line}: WARNING: exceeds hub.max_commits_per_hour={budget:g}; pushes fall behind and the last "
        f"revision is published ~{estimate['lag_s'] / 60:.0f} min after training ends (hub.wait_at_end="
        f"{cfg.hub.wait_at_end:g} s, then python -m parc.sync <output_dir> finishes); publish fewer "
        "revisions (checkpoint.every) or chain slurm/sync.sbatch"
    )
