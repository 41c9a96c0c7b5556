"""`python -m services.preview`: run the preview service until SIGTERM (settings from TISTUDIO_* variables)."""

import sys

from services.common.runtime import serve
from services.preview.service import DEFINITION

sys.exit(serve(DEFINITION))
