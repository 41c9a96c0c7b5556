"""`python -m services.trainer`: run the trainer service until SIGTERM (settings from TISTUDIO_* variables)."""

import sys

from services.trainer.service import DEFINITION
from services.common.runtime import serve

sys.exit(serve(DEFINITION))
