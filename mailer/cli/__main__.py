"""`python -m mailer.cli`: the same as the `optout` console script."""

import sys

from mailer.cli.main import main

sys.exit(main())
