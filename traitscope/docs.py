"""The configuration reference, generated from the schema so that it cannot drift from what start-up validates; and
the Python API reference, generated from the docstrings by pdoc.

python -m traitscope.docs                # write docs/configuration.md
python -m traitscope.docs --check        # exit 1 when docs/configuration.md is not what the schema gives
python -m traitscope.docs --api build/api  # the API reference as HTML (open build/api/index.html); any warning
                                         # while building it is an error
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .study import load_schema

DOC = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"
HEADER = """# Configuration reference

Generated from `traitscope/schemas/config.schema.yaml` by `python -m traitscope.docs` (a test fails when this file
is not what the schema gives). Start-up validates a study's config against the same schema and fills in these
defaults; `<name>` stands for a key you choose (a variant's, a prompt set's, a finetune's name), `category/name` for a
trait. Layer specs: `all`, `12`, `-1`, `"10-20"` (inclusive), `"0:30:2"` (a slice), `"3,7"`, or a list of these.
"""


def _type(spec: dict[str, Any], defs: dict[str, Any]) -> str:
    if "$ref" in spec:
        name = spec["$ref"].rsplit("/", 1)[1]
        return f"{name} spec" if name == "layers" else name
    if "enum" in spec:
        return " \\| ".join(f"`{v}`" for v in spec["enum"] if v is not None) + (
            " or null" if None in spec["enum"] else ""
        )
    if "oneOf" in spec or "anyOf" in spec:
        return " or ".join(_type(s, defs) for s in spec.get("oneOf") or spec.get("anyOf") or [])
    kind = spec.get("type", "")
    kinds = kind if isinstance(kind, list) else [kind]
    named = [k for k in kinds if k != "null"]
    if "array" in named and isinstance(spec.get("items"), dict):
        named = [f"list of {_type(spec['items'], defs)}" if k == "array" else k for k in named]
    return " or ".join(named) + (" or null" if "null" in kinds else "")


def _default(spec: dict[str, Any]) -> str:
    if "default" not in spec:
        return ""
    return f"`{json.dumps(spec['default'])}`"


def _clean(text: Any) -> str:
    return " ".join(str(text or "").split()).replace("|", "\\|")


def _rows(prefix: str, spec: dict[str, Any], defs: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    rows = [(prefix, _type(spec, defs), _default(spec), _clean(spec.get("description")))]
    props = spec.get("properties") or {}
    for key, sub in props.items():
        rows += _rows(f"{prefix}.{key}", sub, defs)
    extra = spec.get("additionalProperties")
    if isinstance(extra, dict) and (extra.get("properties") or extra.get("description")):
        rows += _rows(f"{prefix}.<name>", extra, defs)
    if isinstance(spec.get("items"), dict) and spec["items"].get("properties"):
        rows += _rows(f"{prefix}[]", spec["items"], defs)
    return rows


def render(schema: dict[str, Any] | None = None) -> str:
    """The Markdown reference of ``schema`` (the project's schema by default): one table per top-level section."""
    schema = schema or load_schema()
    defs = schema.get("definitions") or {}
    required = set(schema.get("required") or [])
    out = [HEADER]
    toc = []
    body = []
    for section, spec in schema["properties"].items():
        toc.append(f"- [`{section}`](#{section})" + (" (required)" if section in required else ""))
        body.append(f"\n## {section}\n")
        if spec.get("description"):
            body.append(_clean(spec["description"]) + "\n")
        body.append("| key | type | default | meaning |\n| --- | --- | --- | --- |")
        for key, kind, default, desc in _rows(section, spec, defs):
            body.append(f"| `{key}` | {kind} | {default} | {desc} |")
        body += _examples(section)
    return "\n".join(out + toc + body) + "\n"


def _examples(section: str) -> list[str]:
    """The example of each registered experiment whose config section is (or sits in) ``section``: its
    ``example.yaml``'s section, as the tiny test study configures it."""
    import yaml

    from .experiments import REGISTRY

    out = []
    for experiment in REGISTRY:
        example = experiment.example_config()
        if experiment.key()[0] != section or not example.get("section"):
            continue
        nested: Any = example["section"]
        for k in reversed(experiment.key()):
            nested = {k: nested}
        needs = sorted(f"{kind}.{name}" for kind, entries in (example.get("needs") or {}).items() for name in entries)
        out.append(
            f"\nExample (`traitscope/experiments/{experiment.name}/example.yaml`, as the tiny test study configures it"
            + (f"; it also defines {', '.join(f'`{n}`' for n in needs)}" if needs else "")
            + "):\n\n```yaml\n"
            + yaml.safe_dump(nested, sort_keys=False, width=100).rstrip()
            + "\n```"
        )
    return out


API_MODULES = (
    "traitscope.api",
    "traitscope.results",
    "traitscope.core.artifacts",
    "traitscope.core.export",
    "traitscope.core.steering",
    "traitscope.core.hooks",
    "traitscope.core.extract",
    "traitscope.core.project",
    "traitscope.core.planted",
    "traitscope.core.judge",
)
"""The modules of the API reference: the live-model API, the results reader, and the core they call (not
``core.capture`` and ``core.methods``: pdoc cannot resolve the postponed annotations of their NamedTuples)."""


def build_api(out: str | Path) -> Path:
    """The API reference of :data:`API_MODULES` as HTML under ``out`` (pdoc, reStructuredText docstrings); a
    warning while building it (a docstring pdoc cannot render, a module that does not import) raises."""
    import warnings

    import pdoc
    import pdoc.render

    pdoc.render.configure(docformat="restructuredtext", show_source=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pdoc.pdoc(*API_MODULES, output_directory=Path(out))
    return Path(out) / "index.html"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--api", metavar="FOLDER", help="write the API reference (HTML) into FOLDER")
    args = parser.parse_args(argv)
    if args.api:
        print(f"wrote {build_api(args.api)}")
        return 0
    text = render()
    if args.check:
        if not DOC.is_file() or DOC.read_text(encoding="utf-8") != text:
            print(f"{DOC} is out of date (fix: python -m traitscope.docs)", file=sys.stderr)
            return 1
        return 0
    DOC.parent.mkdir(exist_ok=True)
    DOC.write_text(text, encoding="utf-8")
    print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
