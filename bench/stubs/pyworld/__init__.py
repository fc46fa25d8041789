"""Empty stand-in for pyworld (benchmark machines only).

The full CosyVoice2 yaml names cosyvoice.dataset.processor functions, so loading it imports that
module, which imports pyworld for training-time F0 extraction. Inference never calls it, and there is
no cp312 wheel of pyworld 0.3.4. Any use fails loudly.
"""


def __getattr__(name):
    raise AttributeError(f"pyworld is a stand-in here (benchmark machines only); pyworld.{name} is unavailable")
