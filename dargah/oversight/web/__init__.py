"""The public oversight dashboard (no sign-in) under ``/dashboard``: national and per-agency
progress against the 7th Plan, levels, KPIs, satisfaction, duplicates and violations, with
every table as CSV and XLSX and an agency's report as PDF."""
