"""``python -m studio`` starts the studio (same as ``tdri-studio``)."""

import sys

from .app import main

sys.exit(main())
