"""Study report: group figures, tables and the generated methods text."""
