"""The three services by name, for `tistudio serve NAME`."""

from services.caption.service import DEFINITION as CAPTION
from services.preview.service import DEFINITION as PREVIEW
from services.trainer.service import DEFINITION as TRAINER

DEFINITIONS = {d.name: d for d in (CAPTION, TRAINER, PREVIEW)}
