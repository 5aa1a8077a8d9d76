"""Streamlit entry point of the pathxai slide viewer.

Run it with ``pathxai view DIR`` (which sets the configuration and binds 127.0.0.1), or directly:
``PATHXAI_VIEW_DIR=DIR streamlit run app/streamlit_app.py --server.address 127.0.0.1``.
The page itself lives in :mod:`pathxai.viewer.page`, so an installed package can run it too.
"""

from pathxai.viewer.page import main

main()
