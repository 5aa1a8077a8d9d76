"""Script that ``streamlit run`` executes for ``pathxai view`` (installed with the package)."""

from pathxai.viewer.page import main

main()
