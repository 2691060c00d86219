"""``python -m umcam_lib.segment``: brain masks for new stacks (see :mod:`umcam_lib.segment`)."""
import sys

from .cli import main

sys.exit(main())
