"""Training: the decoder on synthetic defects, its losses, the head check, the chat."""
