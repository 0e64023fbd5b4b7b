"""Hub branch names of checkpoint revisions: `hub.branch`, a template holding `{N}` once (the step).

Parc's default is `checkpoint-{N}`, Pythia's suites use `step{N}`. A step is read back from a branch name
with the same template, so revisions always sort by step (`step10` after `step9`), never as text: sorting
names as text is how Stanford's Mistral runs ended with `main` on the wrong checkpoint. Local checkpoint
directories stay `checkpoint-N/` whatever the branch name.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Dict, Iterable, Optional

from parc.errors import ParcError

DEFAULT = "checkpoint-{N}"
PLACEHOLDER = "{N}"
# git check-ref-format: no control characters, space, ~ ^ : ? * [ \, no "..", "@{", "//", no component
# starting with "." or ending with ".lock", not ending with "/" or ".".
_FORBIDDEN = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]|\.\.|@\{|//")


class BranchTemplate:
    """`name(step)` and its inverse `step(name)`; construction validates the template."""

    def __init__(self, template: str = DEFAULT):
        self.template = str(template)
        check(self.template)
        head, _, tail = self.template.partition(PLACEHOLDER)
        self._pattern = re.compile(rf"^{re.escape(head)}(0|[1-9]\d*)({re.escape(tail)})$")

    def name(self, step: int) -> str:
        return self.template.replace(PLACEHOLDER, str(int(step)))

    def step(self, name: str) -> Optional[int]:
        """The step a branch of this template holds; None for any other branch (main, a user's own)."""
        found = self._pattern.match(name)
        return int(found.group(1)) if found else None

    def revisions(self, branch_names: Iterable[str]) -> Dict[int, str]:
        """step -> branch, for the branches of this template."""
        return {step: name for name in branch_names if (step := self.step(name)) is not None}

    def __repr__(self) -> str:
        return f"BranchTemplate({self.template!r})"


def check(template: str) -> None:
    """Raise ParcError unless `template` has `{N}` exactly once and makes a valid git branch name."""
    fix = "use e.g. hub.branch='checkpoint-{N}' (Parc's) or hub.branch='step{N}' (Pythia's)"
    if template.count(PLACEHOLDER) != 1:
        raise ParcError(f"hub.branch={template!r} must contain {PLACEHOLDER} exactly once (the step): {fix}")
    example = template.replace(PLACEHOLDER, "0")
    if "/" in template:  # git allows it, but each revision is also one file name in the journal
        raise ParcError(f"hub.branch={template!r} must not contain '/': {fix}")
    if (
        _FORBIDDEN.search(example)
        or example.startswith((".", "-"))
        or example.endswith((".", ".lock"))
        or "{" in example
        or "}" in example
        or example in ("main", "HEAD", "@")
    ):
        raise ParcError(
            f"hub.branch={template!r} does not make a valid git branch name ({example!r} for step 0): {fix}"
        )


def guess(branch_names: Iterable[str]) -> BranchTemplate:
    """The template most of a repo's numbered branches follow (for repos whose config we do not have):
    `step{N}` for a Pythia suite, `checkpoint-{N}` for Parc's default; the default when none is numbered."""
    shapes = Counter()
    for name in branch_names:
        found = re.fullmatch(r"(\D*?)(0|[1-9]\d*)(\D*)", name)
        if found:
            shapes[f"{found.group(1)}{PLACEHOLDER}{found.group(3)}"] += 1
    for shape, _ in shapes.most_common():
        try:
            return BranchTemplate(shape)
        except ParcError:
            continue
    return BranchTemplate(DEFAULT)
