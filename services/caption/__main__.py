"""`python -m services.caption`: run the caption service until SIGTERM (settings from TISTUDIO_* variables)."""

import sys

from services.caption.service import DEFINITION
from services.common.runtime import serve

sys.exit(serve(DEFINITION))
