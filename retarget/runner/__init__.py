"""Use a compiled artifact: open it (`artifact`), chat with it (`chat`), measure it (`bench`), gate on it (`gates`)."""
