"""``python -m studio`` starts the studio (same as ``tdri-studio``)."""

import sys

from studio.app import main

sys.exit(main())
