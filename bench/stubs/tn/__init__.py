"""Stand-in for WeTextProcessing's `tn` package (benchmark machines only).

cosyvoice/cli/frontend.py imports tn's Chinese and English normalizers when the proprietary ttsfrd is
missing. The real package needs pynini (a large compiled wheel). These normalizers return the text
unchanged, so numbers and dates are not spelled out; the benchmark texts contain none.
"""
