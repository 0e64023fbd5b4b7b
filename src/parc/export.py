"""`python -m parc.export rwkv <checkpoint dir | hub:org/name@revision> <out.pth> [dtype=fp32|fp16|bf16]`:
an RWKV checkpoint as BlinkDL's RWKV-4 state dict, the `.pth` the `rwkv` package (ChatRWKV) loads:
`RWKV(model="out.pth", strategy="cpu fp32")`. A Hub revision is downloaded (verified against its manifest)
first; endpoint and token are huggingface_hub's usual settings. `dtype=` casts the weights (default: as trained).
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

from parc.cli import Command, Key, Paths
from parc.errors import exit_on_error

COMMAND = Command("parc.export", __doc__, subcommands=(
    Command("rwkv", paths=Paths("<checkpoint dir | hub:org/name@revision> <out.pth>", 2, 2, str),
            keys=(Key("dtype", str, None, "cast the weights (default: as trained)", ("fp32", "fp16", "bf16")),),
            deprecated={"--dtype": "dtype"},
            example="python -m parc.export rwkv runs/demo/rwkv-seed0-shard0/checkpoint-200 rwkv.pth"),),
    example="python -m parc.export rwkv runs/demo/rwkv-seed0-shard0/checkpoint-200 rwkv.pth")


@exit_on_error
def main(argv: Optional[List[str]] = None) -> None:
    args = COMMAND.parse(argv)
    from parc.hub import export_rwkv_from

    written = export_rwkv_from(args.paths[0], Path(args.paths[1]), args.dtype)
    print(f"wrote {written} (BlinkDL RWKV-4; load with rwkv.model.RWKV(model={str(written)!r}, strategy='cpu fp32'))")


if __name__ == "__main__":
    main()
