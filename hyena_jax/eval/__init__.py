"""Evaluation: perplexity modes over token streams (see perplexity.py)."""
