"""`python -m parc.train [overrides]`: compose the config, check it, then train or (dry_run=true) print the plan.

Hydra's own command line (`-m` sweeps with a launcher, `--cfg job`, `--help`) is used when a flag is given;
plain runs compose the same config through Hydra's compose API, so nothing is written before every
check has passed (Hydra's run directory and logging are not used: each rank derives output_dir itself).
"""

from __future__ import annotations

import sys
from typing import List, Optional

from omegaconf import DictConfig, OmegaConf

from parc.config import CONFIG_DIR, check_config_dir, compose, read_size_alias, register_schema
from parc.errors import exit_on_error


@exit_on_error
def main(argv: Optional[List[str]] = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(arg.startswith("-") for arg in argv):
        return hydra_cli()
    run_composed(argv)


def run_composed(overrides: List[str]) -> None:
    run(compose(overrides))


@exit_on_error
def run(cfg: DictConfig) -> None:
    from parc.training import validate

    validate(cfg)  # before the trainer's imports (torch, transformers: seconds), so a refusal is quick
    from parc.training import dry_run_report, log_to_stderr, train

    if cfg.dry_run:
        print(dry_run_report(cfg))
        return
    log_to_stderr()  # parc's own messages (Hub pushes, waits, retries) on stderr
    code = train(cfg)
    if code:
        sys.exit(code)


def hydra_cli() -> None:
    import hydra

    register_schema()

    @hydra.main(config_path=str(check_config_dir(CONFIG_DIR)), config_name="train", version_base=None)
    def task(cfg: DictConfig) -> None:
        cfg = OmegaConf.create(OmegaConf.to_container(read_size_alias(cfg), resolve=True))
        run(cfg)

    task()


if __name__ == "__main__":
    main()
