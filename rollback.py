#!/usr/bin/env python3
"""Restore the exact upstream files of a LightTTS checkout patched by lighttts-a10 (git-based)."""

import sys

from lighttts_a10.cli import rollback_main

if __name__ == "__main__":
    sys.exit(rollback_main())
