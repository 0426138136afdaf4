"""rnnpool-nas: search RNNPool CNNs that fit a microcontroller's RAM."""

__version__ = "0.1.0"
