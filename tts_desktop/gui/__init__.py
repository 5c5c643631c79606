"""The desktop window (PySide6 + pyqtgraph). See main_window.py; `app.run_app` starts it."""
