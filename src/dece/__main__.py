"""``python -m dece``."""

import sys

from dece.cli import main

sys.exit(main())
