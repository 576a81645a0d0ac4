"""The Gradio Blocks app: the only package that imports gradio."""
