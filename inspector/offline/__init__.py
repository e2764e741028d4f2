"""The process engineer's offline tools: calibrate, evaluate, report, learn from feedback."""
