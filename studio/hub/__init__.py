"""Model hub access: downloads the user asked for (Hugging Face, ModelScope), resumable and verified."""
