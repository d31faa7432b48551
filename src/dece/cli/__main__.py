"""``python -m dece.cli`` (also ``torchrun -m dece.cli``)."""

import sys

from dece.cli import main

sys.exit(main())
