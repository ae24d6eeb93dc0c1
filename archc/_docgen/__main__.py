"""``python -m archc._docgen``: print a generated document (see :mod:`archc._docgen`)."""

import sys

from archc._docgen import main

sys.exit(main())
