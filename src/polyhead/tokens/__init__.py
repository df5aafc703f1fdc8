"""Tokenisation and word alignment, below both data and models: loading a fast tokenizer, the wordpieces of
each word, and the index plan that pools windows of wordpieces back into words (pure tensor functions)."""
