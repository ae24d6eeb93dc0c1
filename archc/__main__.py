"""``python -m archc``."""

import sys

from archc.cli import main

sys.exit(main())
