"""Benchmark and proof tools for lighttts-a10 (issue 4).

Nothing here is imported by the overlay itself. tts_load, probe_report and the pure parts of
build_model_dir / decode_bench use the standard library only; the GPU parts need torch and a
LightTTS checkout given on the command line (read at run time, never copied into this repository).
"""
