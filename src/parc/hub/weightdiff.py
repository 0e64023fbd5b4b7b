"""Checkpoint diffs: how far each revision's weights moved, per layer, from the previous revision and from
init, streamed from safetensors one slice at a time; and the revisions that cannot be what they claim.

For consecutive revisions t-1, t (sorted by step) and every group of tensors (one transformer block, the
embedding, the head, ...): rel_prev = ||W_t - W_{t-1}|| / ||W_{t-1}||, rel_init = ||W_t - W_0|| / ||W_0||
(Frobenius over the group, float64), plus the group `all`. Tensors are read through `safetensors.safe_open`
in row slices of at most CHUNK_ELEMENTS values, one slice of each compared revision at a time (up to four:
this, previous, init, final), so memory is a few slices, never a model and, for large tensors, not one tensor.
Revisions whose weight files have the same sha256 (the Hub's LFS metadata or git blob id, or a Parc manifest)
are not read again.

Flags (the EleutherAI/pythia #195 and #205 failures): a revision identical to the previous one, a revision
equal to the final one (other than the final itself), and non-monotone change from init: the fewest
revisions whose removal leaves rel_init non-decreasing (within a relative tolerance) are flagged, so a
final-weights copy in the middle of training is caught while the revisions after it are not.

Sources: a local run (`checkpoint-N/` with `model.safetensors`), raw GPT-NeoX checkpoints (parc.store.neox_raw's fp32
masters, written to a temporary safetensors file per revision when first compared), or a Hub repo read-only through
parc.hub.reader (branches following the repo's template, sorted by step; each revision's safetensors
fetched at its commit into a temporary directory, verified against the LFS sha256 / git blob id the Hub
lists, and removed once no later comparison needs them).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from parc.errors import ParcError

CHUNK_ELEMENTS = 1 << 16  # values per slice read (512 KiB in float64; a few of them live at once)
DEFAULT_TOLERANCE = 0.02  # rel_init may dip by 2 % between revisions before it counts as non-monotone
LAYER = re.compile(r"^(.*?\b(?:layers|layer|h|blocks)\.\d+)\.")


@dataclass
class Revision:
    step: int
    name: str
    fetch: Callable[[], List[Path]]  # the revision's safetensors files, local (downloaded on first call)
    digest: Optional[str] = None  # what the weight files are (sha256s), when known without reading them
    release: Callable[[], None] = lambda: None  # drop downloaded files


def group_of(tensor: str) -> str:
    match = LAYER.match(tensor)
    return match.group(1) if match else (tensor.rsplit(".", 1)[0] if "." in tensor else tensor)


def digest_of(shas: Dict[str, str]) -> Optional[str]:
    return hashlib.sha256(json.dumps(sorted(shas.items())).encode()).hexdigest() if shas else None


# --- sources ------------------------------------------------------------------------------------------


def local_revisions(run_dir: Path) -> List[Revision]:
    from parc.store.checkpoint import complete_checkpoints, read_manifest, step_of

    found = []
    for path in complete_checkpoints(Path(run_dir)):
        manifest = read_manifest(path)
        shas = {
            name: meta["sha256"]
            for name, meta in manifest.get("files", {}).items()
            if "/" not in name and name.endswith(".safetensors")
        }
        found.append(
            Revision(step_of(path), path.name, lambda path=path: sorted(path.glob("*.safetensors")), digest_of(shas))
        )
    if not found:
        raise ParcError(f"{run_dir} holds no complete checkpoint: give a run's output_dir or hub:<org>/<name>")
    return found


def hub_revisions(repo, scratch: Optional[Path] = None) -> List[Revision]:
    """Every numbered revision of a repo (a parc.hub.repo.HubRepo whose template is set; read-only); files are
    downloaded under `scratch` (a new temporary directory by default) when needed."""
    from parc.hub.reader import Expected, fetch_files, revisions_by_step

    repo_id = repo.repo_id
    scratch = Path(scratch or tempfile.mkdtemp(prefix="parc-diffs-"))
    found = []
    for step, name in revisions_by_step(repo):
        listed = repo.files(name)
        weights = {rel: meta for rel, meta in listed.files.items() if "/" not in rel and rel.endswith(".safetensors")}
        files = {rel: meta.sha256 or meta.blob_id for rel, meta in weights.items()}  # both name the bytes
        target = scratch / f"{step}"

        def fetch(weights=weights, commit=listed.commit, target=target, name=name):
            if not weights:
                raise ParcError(f"hub:{repo_id}@{name} has no .safetensors weights: diffs read safetensors only")
            expected = {rel: Expected(meta.size, meta.sha256, meta.blob_id, "Hub") for rel, meta in weights.items()}
            fetch_files(repo, commit, expected, target, f"revision {name}")
            return [target / rel for rel in sorted(weights)]

        known = files and all(files.values())
        found.append(
            Revision(
                step, name, fetch, digest_of(files) if known else None, lambda target=target: release_download(target)
            )
        )
    if not found:
        raise ParcError(f"hub:{repo_id} has no numbered revisions (checkpoint-N / stepN branches) to compare")
    return found


def neox_revisions(paths: Sequence[Path], scratch: Optional[Path] = None) -> List[Revision]:
    """Raw GPT-NeoX checkpoints (each a global_stepN dir, or a save dir: every tag under it) as revisions, step =
    iteration: on first use each is read by parc.store.neox_raw (fp32 masters, HF names, fp16 layer tensors checked)
    and written as one safetensors file under `scratch`, dropped once no later comparison needs it."""
    from parc.store import neox_raw

    scratch = Path(scratch or tempfile.mkdtemp(prefix="parc-diffs-"))
    tags = {neox_raw.tag_iteration(tag): tag for path in paths for tag in neox_raw.tags(Path(path))}

    def fetch(tag: Path, target: Path) -> List[Path]:
        from safetensors.torch import save_file

        target.mkdir(parents=True, exist_ok=True)
        weights = neox_raw.read_raw(tag).weights
        save_file({name: tensor.contiguous() for name, tensor in weights.items()}, str(target / "model.safetensors"))
        return [target / "model.safetensors"]

    return [
        Revision(
            step,
            tag.name,
            lambda tag=tag, target=scratch / str(step): fetch(tag, target),
            None,
            lambda target=scratch / str(step): release_download(target),
        )
        for step, tag in sorted(tags.items())
    ]


def release_download(target: Path) -> None:
    """Drop one revision's download, and the scratch directory once it is empty."""
    shutil.rmtree(target, ignore_errors=True)
    try:
        target.parent.rmdir()
    except OSError:  # other revisions are still there
        pass


# --- streaming norms ----------------------------------------------------------------------------------


class Weights:
    """A revision's tensors, opened lazily across its safetensors files."""

    def __init__(self, paths: Sequence[Path]):
        from safetensors import safe_open

        self.handles = [safe_open(str(p), framework="pt") for p in paths]
        self.where = {key: h for h in self.handles for key in h.keys()}

    def keys(self) -> List[str]:
        return sorted(self.where)

    def slices(self, key: str):
        """The tensor as float64 row slices of at most CHUNK_ELEMENTS values."""
        part = self.where[key].get_slice(key)
        shape = part.get_shape()
        if not shape:
            yield self.where[key].get_tensor(key).double().reshape(1)
            return
        row = max(1, int(_product(shape[1:])))
        step = max(1, CHUNK_ELEMENTS // row)
        for lo in range(0, shape[0], step):
            yield part[lo : min(shape[0], lo + step)].double().reshape(-1)


def _product(values) -> int:
    out = 1
    for v in values:
        out *= int(v)
    return out


def squared_norms(current: Weights, others: Dict[str, Weights]) -> Dict[str, Dict[str, float]]:
    """group -> {"self": ||W||^2, "<name>": ||W - W_name||^2 for every other revision}, streamed."""
    keys = current.keys()
    for name, other in others.items():
        if other.keys() != keys:
            missing = sorted(set(keys) ^ set(other.keys()))[:3]
            raise ParcError(
                f"the revision compared with {name} has other tensors ({', '.join(missing)}): "
                "diffs need one architecture across revisions"
            )
    sums: Dict[str, Dict[str, float]] = {}
    for key in keys:
        entry = sums.setdefault(group_of(key), {"self": 0.0, **{n: 0.0 for n in others}})
        streams = {n: o.slices(key) for n, o in others.items()}
        for chunk in current.slices(key):
            entry["self"] += float((chunk * chunk).sum())
            for name, stream in streams.items():
                delta = chunk - next(stream)
                entry[name] += float((delta * delta).sum())
    total = {name: sum(entry[name] for entry in sums.values()) for name in ["self", *others]}
    return {**sums, "all": total}


# --- the comparison -----------------------------------------------------------------------------------


def monotone_keep(values: Sequence[float], tolerance: float) -> List[bool]:
    """The longest subsequence in which each value is at least (1 - tolerance) x the previous kept one;
    ties go to the chain that ends latest. True = kept."""
    n = len(values)
    best, before = [1] * n, [-1] * n
    for j in range(n):
        for i in range(j):
            if values[j] >= values[i] * (1 - tolerance) and best[i] + 1 > best[j]:
                best[j], before[j] = best[i] + 1, i
    keep = [False] * n
    j = max(range(n), key=lambda k: (best[k], k)) if n else -1
    while j >= 0:
        keep[j], j = True, before[j]
    return keep


def same_files(a: Revision, b: Revision) -> bool:
    """Both revisions' weight files are known by digest, and the digests are equal."""
    return a.digest is not None and b.digest is not None and a.digest == b.digest


def compared_with(rev: Revision, previous: Optional[Revision], init: Revision, final: Revision) -> Dict[str, Revision]:
    """The revisions whose weights `rev` is compared with: the previous one (unless the files are the same), init,
    and the final one when digests cannot say whether it is equal."""
    same_prev = previous is not None and same_files(rev, previous)
    others = {}
    if previous is not None and not same_prev:
        others["prev"] = previous
    if rev is not init and not (same_prev and previous is init):
        others["init"] = init
    if rev is not final and (rev.digest is None or final.digest is None):
        others["final"] = final
    return others


def group_rows(rev: Revision, norms: Dict[str, dict], last: Optional[dict], init_norms: Dict[str, float]) -> List[dict]:
    """One row per layer group of `rev`: its norm and its change relative to the previous revision and to init."""
    rows = []
    for group, values in sorted(norms.items()):
        before = last[group]["self"] if last is not None else 0.0
        at_init = init_norms.get(group)
        rows.append(
            {
                "step": rev.step,
                "revision": rev.name,
                "group": group,
                "norm": values["self"] ** 0.5,
                "rel_prev": (values["prev"] / before) ** 0.5 if last is not None and before else None,
                "rel_init": (values.get("init", 0.0) / at_init) ** 0.5 if at_init else None,
            }
        )
    return rows


def revision_flags(summary: List[dict], tolerance: float) -> None:
    """Adds `non_monotone` and the readable `flags` to every revision's summary."""
    keep = monotone_keep([s["rel_init"] or 0.0 for s in summary], tolerance)
    for s, kept in zip(summary, keep):
        s["non_monotone"] = not kept
        s["flags"] = [
            text
            for flag, text in (
                (s["identical_to_previous"], "identical to the previous revision"),
                (s["equals_final"], "equals the final weights"),
                (s["non_monotone"], "non-monotone change from init"),
            )
            if flag
        ]


def weight_diffs(revisions: List[Revision], tolerance: float = DEFAULT_TOLERANCE, echo=None) -> dict:
    """{"rows": per (revision, group) changes, "revisions": per revision totals and flags, "flagged": steps}."""
    revisions = sorted(revisions, key=lambda r: r.step)
    init, final = revisions[0], revisions[-1]
    opened: Dict[str, Weights] = {}

    def weights(rev: Revision) -> Weights:
        if rev.name not in opened:
            opened[rev.name] = Weights(rev.fetch())
        return opened[rev.name]

    rows, summary = [], []
    previous, last, init_norms = None, None, {}
    try:
        for rev in revisions:
            same_prev = previous is not None and same_files(rev, previous)
            others = {what: weights(other) for what, other in compared_with(rev, previous, init, final).items()}
            if same_prev:  # identical files: the previous revision's numbers, no change, nothing read
                norms = {g: {**v, "prev": 0.0} for g, v in last.items()}
            else:
                norms = squared_norms(weights(rev), others)
            if rev is init:
                init_norms = {g: v["self"] for g, v in norms.items()}
            rows += group_rows(rev, norms, last, init_norms)
            total = next(r for r in rows[-len(norms) :] if r["group"] == "all")
            summary.append(
                {
                    "step": rev.step,
                    "revision": rev.name,
                    "rel_prev": total["rel_prev"],
                    "rel_init": total["rel_init"],
                    "identical_to_previous": previous is not None and (same_prev or norms["all"].get("prev") == 0.0),
                    "equals_final": rev is not final and (same_files(rev, final) or norms["all"].get("final") == 0.0),
                }
            )
            if echo:
                echo(f"{rev.name}: rel_prev {summary[-1]['rel_prev']}, rel_init {summary[-1]['rel_init']}")
            last, previous = norms, rev
            for done in [r for r in revisions if r.name in opened and r not in (init, final, rev)]:
                opened.pop(done.name)
                done.release()
    finally:
        opened.clear()
        for rev in revisions:
            rev.release()
    revision_flags(summary, tolerance)
    return {"rows": rows, "revisions": summary, "flagged": [s["step"] for s in summary if s["flags"]]}


def render(diffs: dict) -> str:
    lines = [f"{'step':>8}  {'revision':<22} {'rel_prev':>10} {'rel_init':>10}  flags"]

    def fmt(value: Optional[float]) -> str:
        return "-" if value is None else f"{value:.4g}"

    for s in diffs["revisions"]:
        lines.append(
            f"{s['step']:>8}  {s['revision']:<22} {fmt(s['rel_prev']):>10} {fmt(s['rel_init']):>10}  "
            f"{'; '.join(s['flags']) or 'ok'}"
        )
    return "\n".join(lines)
