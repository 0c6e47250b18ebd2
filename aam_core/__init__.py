"""Attention All Microbes (AAM): a PyTorch implementation for 16S amplicon tables."""

__version__ = "0.1.0"
