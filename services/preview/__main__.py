"""`python -m services.preview`: run the preview service until SIGTERM (settings from TISTUDIO_* variables)."""

import sys

from services.preview.service import DEFINITION
from services.common.runtime import serve

sys.exit(serve(DEFINITION))
