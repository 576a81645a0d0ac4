"""Use cases: take Services and a session, yield domain events; no gradio here."""
