"""ssrl-lab: a notebook-first workbench for self-supervised speaker representation learning."""
__version__ = "0.1.0"
