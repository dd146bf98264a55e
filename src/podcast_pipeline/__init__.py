"""Reference app for modelbake: a podcast episode -> transcript, speakers and summary, fully offline.

Whisper transcribes, spaCy finds the people (PERSON entities), a Hugging Face seq2seq model with manifest
``role = "map"`` summarizes token-bounded chunks and the ``role = "reduce"`` model merges the partial
summaries. Every model comes from the baked models directory; nothing touches the network.

Heavy libraries (torch, whisper, spaCy, transformers) are imported inside the functions that need them.
"""

__version__ = "0.1.0"
