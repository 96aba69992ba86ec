# Load the grading helpers as a plugin, so `pytest graders/<slug>` works as `workbook check` does.
pytest_plugins = ["workbook.grading"]
