"""ftkit: fine-tuning and transfer learning you can see, on real weights and data, offline."""
__version__ = "0.1.0"
