"""Stand-in for the `wetext` package (benchmark machines only).

ad1c76e's cosyvoice/cli/frontend.py imports wetext's Normalizer when the proprietary ttsfrd is missing
(30bc57b's imports WeTextProcessing's `tn`, stubbed beside this). This one returns the text unchanged, so
numbers and dates are not spelled out; the benchmark texts contain none.
"""


class Normalizer:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs

    def normalize(self, text):
        return text
