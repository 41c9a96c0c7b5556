"""`python -m services.trainer`: run the trainer service until SIGTERM (settings from TISTUDIO_* variables)."""

import sys

from services.common.runtime import serve
from services.trainer.service import DEFINITION

sys.exit(serve(DEFINITION))
