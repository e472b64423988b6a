"""Reusable Streamlit widgets of the admin app (pages stay thin and read like the screen)."""
