"""Plain data types shared by every layer; imports nothing else from studio."""
