"""``python -m dgm``: the same as the ``dgm`` command."""

import sys

from dgm.cli import main

sys.exit(main())
