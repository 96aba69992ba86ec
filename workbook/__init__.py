"""The FastAPI Advanced workbook: manifest, grading engine and the helpers graders use."""

__version__ = "0.1.0"
