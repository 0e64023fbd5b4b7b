"""`python -m parc.export rwkv <checkpoint dir | hub:org/name@revision> <out.pth> [--dtype fp32|fp16|bf16]`:
an RWKV checkpoint as BlinkDL's RWKV-4 state dict, the `.pth` the `rwkv` package (ChatRWKV) loads:
`RWKV(model="out.pth", strategy="cpu fp32")`. A Hub revision is downloaded (verified against its manifest)
first; endpoint and token are huggingface_hub's usual settings.

`python -m parc.export hf <raw GPT-NeoX checkpoint dir> <out dir> [--dtype fp32|fp16]`: EleutherAI's raw
`neox-ckpt-pythia-*` files (a global_stepN dir) as an HF GPTNeoXForCausalLM directory (fp32 masters, or fp16).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from parc.errors import exit_on_error


@exit_on_error
def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m parc.export", description=__doc__.split("\n\n")[0])
    formats = parser.add_subparsers(dest="format", required=True)
    rwkv = formats.add_parser("rwkv", help="BlinkDL RWKV-4 .pth for the rwkv package")
    rwkv.add_argument("source", help="checkpoint directory, or hub:org/name@revision")
    rwkv.add_argument("out", type=Path, help="the .pth to write")
    rwkv.add_argument("--dtype", choices=["fp32", "fp16", "bf16"], default=None,
                      help="cast the weights (default: as trained)")
    hf = formats.add_parser("hf", help="a raw GPT-NeoX (DeepSpeed) checkpoint as an HF GPTNeoXForCausalLM dir")
    hf.add_argument("source", type=Path, help="global_stepN directory (or the save dir with `latest`)")
    hf.add_argument("out", type=Path, help="the directory to write")
    hf.add_argument("--dtype", choices=["fp32", "fp16"], default=None, help="fp32 masters (default) or fp16")
    args = parser.parse_args(argv)
    if args.format == "hf":
        from parc.hub import export_neox_hf

        export_neox_hf(args.source, args.out, args.dtype)
        return

    from parc.hub import export_rwkv_from

    written = export_rwkv_from(args.source, args.out, args.dtype)
    print(f"wrote {written} (BlinkDL RWKV-4; load with rwkv.model.RWKV(model={str(written)!r}, strategy='cpu fp32'))")


if __name__ == "__main__":
    main()
