"""Container backends: one interface (`backend.py`) and its implementations side by side."""
