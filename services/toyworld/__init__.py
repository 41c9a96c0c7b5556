"""The toy world: a deterministic generator of simple captioned pictures and a judge that reads them back, so tests
and the demo can show that training learns without downloading any model (see `world` and `judge`).

The trained toy models ship in `weights/`, each beside the recipe that retrains it: `TOY_SD` (a diffusers SD1.x
folder, `toy_sd.py`) and `TOY_BLIP` (a transformers BLIP captioning folder, `toy_blip.py`)."""

from pathlib import Path

WEIGHTS = Path(__file__).resolve().parent / "weights"
TOY_SD = WEIGHTS / "toy-sd"
TOY_BLIP = WEIGHTS / "toy-blip"
