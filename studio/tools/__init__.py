"""Agent tools: what a model may call (OpenAI function schemas), and where the calls run (a sandbox)."""
