"""Parc: parallel multi-seed language-model pretraining (Pythia, Mamba, RWKV-4 x seeds), reproducibly."""

__version__ = "0.1.0"
