"""The Streamlit entry point (``app/streamlit_app.py``), a package so import-linter checks its imports."""
