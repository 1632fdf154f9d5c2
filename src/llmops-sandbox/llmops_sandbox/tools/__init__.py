"""Third-party command-line tools the project fetches for itself (helm, kubectl)."""
