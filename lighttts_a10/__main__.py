"""`python -m lighttts_a10 apply|rollback|refresh ...`"""

import sys

from .cli import main

sys.exit(main())
