"""gemfinder: find the best fine-tuned model in a model tree under a fixed query budget."""

__version__ = "0.1.0"
