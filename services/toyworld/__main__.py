"""Copy the toy models (with their recipes) into a folder, for a store or a cluster to serve them from:

    python -m services.toyworld --out /work/models      # -> /work/models/toy-sd, /work/models/toy-blip

The dev Kubernetes overlay runs this in its bucket Job and uploads the folder to MinIO, so the services there load
`store:models/toy-sd` and `store:models/toy-blip` exactly as they would load real weights.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from services.toyworld import TOY_BLIP, TOY_SD


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for model in (TOY_SD, TOY_BLIP):
        target = args.out / model.name
        partial = args.out / f".{model.name}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(model, partial)
        shutil.rmtree(target, ignore_errors=True)
        partial.rename(target)
        recipe = model.with_name(model.name + ".recipe.json")
        shutil.copyfile(recipe, args.out / recipe.name)
        print(f"{target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
