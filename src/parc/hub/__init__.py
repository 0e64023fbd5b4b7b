"""Publishing to and reading from the Hugging Face Hub: the background publisher and its journal, the repo
client with retries, commit pacing and the 429 wait, branch-name templates, the one reader (the
`hub:<org/name>[@<revision>]` grammar, revisions by step, verified fetches), audits and revision listings,
parc.sync, export formats (BlinkDL's RWKV .pth; raw GPT-NeoX checkpoints as HF directories) and model cards (README.md on main). Nothing outside this
package imports huggingface_hub's download or listing functions.

Imports store, archs-free code and the shared bottom only; never training or study.
"""

from parc import lazy_exports

PUBLIC = {
    "Publisher": "publisher",
    "Journal": "journal",
    "JOURNAL_DIR": "journal",
    "refuse_offline_env": "publisher",
    "HubRepo": "repo",
    "RetryPolicy": "repo",
    "BranchTemplate": "branches",
    "run_revisions": "revisions",
    "sync_pending": "sync",
    "export_rwkv_from": "export",
    "export_neox_hf": "neoxhf",
    "write_card": "card",
    "card_files": "card",
    "HubSpec": "reader",
    "parse_hub_spec": "reader",
    "resume_spec": "reader",
    "open_repo": "reader",
    "fetch_revision": "reader",
}
__all__ = sorted(PUBLIC)
__getattr__ = lazy_exports(__name__, PUBLIC)
