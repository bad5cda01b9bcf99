"""Generation: cached prefill + per-token decode for every mixer, and sampling."""
