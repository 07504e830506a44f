"""`python -m devstack` (`just up`): run the whole platform until Ctrl-C or SIGTERM."""

import sys

from devstack.stack import main

sys.exit(main())
