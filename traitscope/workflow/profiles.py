"""Make ``snakemake --profile slurm`` (and ``--profile local``) find this project's profiles by name.

Snakemake looks a profile name up in the current directory, then in its user config directory
(``~/.config/snakemake``, or ``$XDG_CONFIG_HOME/snakemake``), then in the site directory (``/etc/xdg/snakemake``).
``python -m traitscope.workflow.profiles`` links each folder of ``profiles/`` into the user config directory, so that the
literal ``snakemake --profile slurm results/all`` works from the repository; ``--profile profiles/slurm`` works
without it.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..core.errors import TraitscopeError

PROFILES = Path(__file__).resolve().parents[2] / "profiles"


class ProfileError(TraitscopeError):
    pass


def snakemake_config_dir() -> Path:
    """Where Snakemake looks up profile names after the current directory (its own lookup, not a copy of it)."""
    from snakemake.common import get_appdirs

    return Path(get_appdirs().user_config_dir)


def install(source: Path = PROFILES, target: Path | None = None) -> list[str]:
    """Link every profile folder of ``source`` into ``target`` (Snakemake's user config directory); returns one line
    per profile. A link to another checkout's profile is replaced; anything else already there is left alone and
    stops the install with the fix."""
    target = target or snakemake_config_dir()
    names = sorted(p.name for p in source.iterdir() if (p / "config.yaml").is_file())
    if not names:
        raise ProfileError(f"{source}: no profile folders with a config.yaml (fix: run from a traitscope checkout)")
    target.mkdir(parents=True, exist_ok=True)
    lines, taken = [], []
    for name in names:
        profile, link = (source / name).resolve(), target / name
        if link.is_symlink():
            if link.resolve() == profile:
                lines.append(f"--profile {name}: {link} -> {profile} (already linked)")
                continue
            link.unlink()
        elif link.exists():
            taken.append((link, profile))
            continue
        os.symlink(profile, link, target_is_directory=True)
        lines.append(f"--profile {name}: {link} -> {profile}")
    if taken:  # every other profile is linked first
        raise ProfileError(
            "; ".join(
                f"{link} exists and is not this project's profile (fix: move it away and re-run "
                f"`python -m traitscope.workflow.profiles`, or pass --profile {profile})"
                for link, profile in taken
            )
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m traitscope.workflow.profiles",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument(
        "--target",
        type=Path,
        default=None,
        help="where to link them (default: Snakemake's user config directory, usually ~/.config/snakemake)",
    )
    args = ap.parse_args(argv)
    try:
        for line in install(PROFILES, args.target):
            print(line)
    except ProfileError as exc:  # a profile of the user's own stays; the set-up chain goes on (it is not fatal)
        print(f"warning: {exc}", file=sys.stderr)
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
