"""``python -m umcam_lib.pipeline``: run the study (see :mod:`umcam_lib.pipeline`)."""
import sys

from .cli import main

sys.exit(main())
