"""Stand-in for the `wetext` package (benchmark machines only).

ad1c76e's cosyvoice/cli/frontend.py imports wetext's Normalizer when the proprietary ttsfrd is missing
(30bc57b's imports WeTextProcessing's `tn`, stubbed beside this); it is the same identity normalizer, so
numbers and dates are not spelled out; the benchmark texts contain none.
"""

from tn.chinese.normalizer import Normalizer

__all__ = ["Normalizer"]
