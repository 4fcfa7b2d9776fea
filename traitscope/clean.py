"""Free the disk a finished study no longer needs, without touching a result (:mod:`traitscope.workflow.clean`).

    python -m traitscope.clean results --dry-run    # what would go, and how much
    python -m traitscope.clean results              # remove it
    python -m traitscope.clean results --judge      # also the judge's answers (asking again costs API calls)

What goes: capture shards no output names any more, chunk tensors a killed capture left, finetune checkpoints, what
each registered experiment keeps in the cache (``Experiment.caches``) and temporaries of killed jobs. Every output
stays, and so does anything the workflow did not write. A folder no run wrote is refused in one line (exit 2).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .core.errors import TraitscopeError
from .workflow.clean import clean, plan, summary


def experiment_caches() -> dict[str, str]:
    """Each registered experiment's folders under ``cache/`` and why they may go."""
    from .experiments import REGISTRY

    return {kind: why for e in REGISTRY for kind, why in e.caches.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="?", default="results")
    parser.add_argument("--dry-run", "-n", action="store_true")
    parser.add_argument("--judge", action="store_true")
    args = parser.parse_args(argv)
    if not Path(args.results).is_dir():
        print(f"'{args.results}' is not a folder (fix: pass the study's results_dir)", file=sys.stderr)
        return 2
    caches = experiment_caches()
    try:
        items = (plan if args.dry_run else clean)(args.results, args.judge, caches=caches)
    except TraitscopeError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    print(("would remove:\n" if args.dry_run else "removed:\n") + summary(items))
    return 0


if __name__ == "__main__":
    sys.exit(main())
