"""Check every function built by ``sam build`` against Lambda's unzipped size limit.

Lambda refuses a function whose code plus all of its layers exceeds 262,144,000 bytes unzipped. This reads the built
template in ``.aws-sam/build``, sums the files of each function's folder and of each layer it uses (from ``Globals``
and its own ``Layers``), prints one line per function and exits 1 when any total reaches the limit.

Usage: python scripts/package_size.py [.aws-sam/build]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from batch_classifier_local.template import load_template

LAMBDA_UNZIPPED_LIMIT = 262_144_000  # bytes: function code and all of its layers, unzipped
MB = 1024 * 1024
LIMIT_MB = LAMBDA_UNZIPPED_LIMIT / MB


def folder_size(folder: Path) -> int:
    """Bytes of every regular file under ``folder`` (symbolic links are not followed, as in a zip)."""
    total = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            path = Path(root) / name
            if not path.is_symlink():
                total += path.stat().st_size
    return total


def _layer_folder(build_dir: Path, layer: Any) -> Path | None:
    """The built folder of a layer given as ``!Ref Layer`` in the template; ``None`` for an external ARN."""
    if isinstance(layer, dict) and "Ref" in layer:
        return build_dir / str(layer["Ref"])
    return None


def measure(build_dir: Path) -> list[tuple[str, int, list[tuple[str, int]]]]:
    """``(function, code bytes, [(layer, bytes), ...])`` for every function of the built template."""
    template = load_template(build_dir / "template.yaml")
    global_layers = template.get("Globals", {}).get("Function", {}).get("Layers", [])
    rows = []
    for logical_id, resource in template.get("Resources", {}).items():
        if resource.get("Type") not in {"AWS::Serverless::Function", "AWS::Lambda::Function"}:
            continue
        properties = resource.get("Properties", {})
        code_uri = properties.get("CodeUri") or logical_id
        code = folder_size(build_dir / str(code_uri))
        layers = []
        for layer in [*global_layers, *properties.get("Layers", [])]:
            folder = _layer_folder(build_dir, layer)
            if folder is None:
                print(f"warning: {logical_id} uses a layer outside this build, not counted: {layer}", file=sys.stderr)
                continue
            layers.append((folder.name, folder_size(folder)))
        rows.append((logical_id, code, layers))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("build_dir", nargs="?", default=".aws-sam/build", type=Path)
    args = parser.parse_args(argv)
    if not (args.build_dir / "template.yaml").is_file():
        print(f"error: no built template in {args.build_dir}; run `make build` first", file=sys.stderr)
        return 2
    rows = measure(args.build_dir)
    if not rows:
        print(f"error: no function in {args.build_dir / 'template.yaml'}", file=sys.stderr)
        return 2
    too_big = []
    print(f"{'function':<28}{'code MB':>10}  {'layers MB':<28}{'total MB':>10}  (limit {LIMIT_MB:.1f} MB)")
    for name, code, layers in rows:
        total = code + sum(size for _layer, size in layers)
        layer_text = ", ".join(f"{layer} {size / MB:.1f}" for layer, size in layers) or "-"
        verdict = "TOO BIG" if total >= LAMBDA_UNZIPPED_LIMIT else "ok"
        print(f"{name:<28}{code / MB:>10.1f}  {layer_text:<28}{total / MB:>10.1f}  {verdict}")
        if total >= LAMBDA_UNZIPPED_LIMIT:
            too_big.append(name)
    if too_big:
        print(f"error: over Lambda's unzipped limit: {', '.join(too_big)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
