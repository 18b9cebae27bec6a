"""Writing results: results.json / predictions / report.md and plots, alignment curves, rescoring published outputs."""
