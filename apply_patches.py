#!/usr/bin/env python3
"""Apply the lighttts-a10 patch series to a LightTTS checkout: verified first, all or nothing."""

import sys

from lighttts_a10.cli import apply_main

if __name__ == "__main__":
    sys.exit(apply_main())
