"""The model: loading and caching (``load``), where the decoder layers are (``layers``), and
forward hooks that stop after the deepest layer a stage needs (``hooks``). Every stage asks here."""
