"""One module per product: its result type and the function that computes it from a Session or a Trace."""
