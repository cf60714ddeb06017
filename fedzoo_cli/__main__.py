"""``python -m fedzoo_cli``: the ``fedzoo`` command line."""

import sys

from fedzoo_cli.main import main

sys.exit(main())
