"""`python -m parc.export rwkv <checkpoint dir | hub:org/name@revision> <out.pth> [dtype=fp32|fp16|bf16]`:
an RWKV checkpoint as BlinkDL's RWKV-4 state dict, the `.pth` the `rwkv` package (ChatRWKV) loads:
`RWKV(model="out.pth", strategy="cpu fp32")`. A Hub revision is downloaded (verified against its manifest)
first; endpoint and token are huggingface_hub's usual settings. `dtype=` casts the weights (default: as trained).

`python -m parc.export hf <raw GPT-NeoX checkpoint dir> <out dir> [dtype=fp32|fp16]`: EleutherAI's raw
`neox-ckpt-pythia-*` files (a global_stepN dir) as an HF GPTNeoXForCausalLM directory (fp32 masters, or fp16).
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

from parc.cli import Command, Key, Paths
from parc.errors import exit_on_error

COMMAND = Command(
    "parc.export",
    __doc__,
    subcommands=(
        Command(
            "rwkv",
            paths=Paths("<checkpoint dir | hub:org/name@revision> <out.pth>", 2, 2, str),
            keys=(Key("dtype", str, None, "cast the weights (default: as trained)", ("fp32", "fp16", "bf16")),),
            deprecated={"--dtype": "dtype"},
            example="python -m parc.export rwkv runs/demo/rwkv-seed0-shard0/checkpoint-200 rwkv.pth",
        ),
        Command(
            "hf",
            paths=Paths("<raw GPT-NeoX global_stepN dir> <out dir>", 2, 2, str),
            keys=(
                Key(
                    "dtype",
                    str,
                    None,
                    "fp32 masters (default) or fp16 (as the published HF branches)",
                    ("fp32", "fp16"),
                ),
            ),
            example="python -m parc.export hf neox-ckpt-pythia-160m/global_step1000 pythia-160m-step1000 dtype=fp16",
        ),
    ),
    example="python -m parc.export rwkv runs/demo/rwkv-seed0-shard0/checkpoint-200 rwkv.pth",
)


@exit_on_error
def main(argv: Optional[List[str]] = None) -> None:
    args = COMMAND.parse(argv)
    if args.subcommand == "hf":
        from parc.hub import export_neox_hf

        export_neox_hf(Path(args.paths[0]), Path(args.paths[1]), args.dtype)
        return
    from parc.hub import export_rwkv_from

    written = export_rwkv_from(args.paths[0], Path(args.paths[1]), args.dtype)
    print(f"wrote {written} (BlinkDL RWKV-4; load with rwkv.model.RWKV(model={str(written)!r}, strategy='cpu fp32'))")


if __name__ == "__main__":
    main()
